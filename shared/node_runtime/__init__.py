"""The retailer node's runtime: it serves federated rounds with the app's own ClientApp only.

- :mod:`shared.node_runtime.trust`: which campaign app releases a node serves (pure Python);
- :mod:`shared.node_runtime.events`: the node's local, append-only event stream and its reader;
- :mod:`shared.node_runtime.flower_runner`: the long-lived runner that claims a SuperNode's
  tasks (``flower-supernode --isolation process``); the only module touching Flower internals.

Importing this package imports no Flower code: ``flower_runner`` is imported explicitly.
"""

from shared.node_runtime.events import Event, EventBatch, EventKind, EventLog, read_events
from shared.node_runtime.trust import AllowList, RunClaim, TrustDecision, TrustedRelease

__all__ = [
    "AllowList",
    "Event",
    "EventBatch",
    "EventKind",
    "EventLog",
    "RunClaim",
    "TrustDecision",
    "TrustedRelease",
    "read_events",
]
