"""One status summary for operators (`retail-coordinator status`, `GET /api/v1/status`).

It is polled often (dashboards, nodes), so it must stay cheap whatever the federation's size:
counts come from SQL aggregates, not from listing rows, and whether the SuperLink answers is
checked at most every ``REACHABILITY_TTL`` seconds (listing a thousand nodes over TLS took
about 100 ms, measured by tests/benchmarks/api_load.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import func, select

from coordinator.db import schema as t
from coordinator.flower_control import ControlError
from coordinator.runtime import Coordinator
from shared import __version__

REACHABILITY_TTL = 5.0
_CACHE_KEY = "superlink_reachable_cache"
_lock = threading.Lock()


def superlink_reachable(coord: Coordinator, *, max_age: float = REACHABILITY_TTL) -> bool:
    """Whether the SuperLink's Control API answers, remembered for ``max_age`` seconds."""
    if coord.control is None:
        return False
    with _lock:
        cached = coord.extra.get(_CACHE_KEY)
        if isinstance(cached, tuple) and time.monotonic() - cached[0] < max_age:
            return bool(cached[1])
    try:
        coord.control.list_nodes()
        reachable = True
    except ControlError:
        reachable = False
    with _lock:
        coord.extra[_CACHE_KEY] = (time.monotonic(), reachable)
    return reachable


def status(coord: Coordinator) -> dict[str, Any]:
    with coord.db.session(readonly=True) as session:
        retailers = dict(
            session.execute(select(t.Retailer.status, func.count()).group_by(t.Retailer.status))
            .tuples()
            .all()
        )
        registered = session.scalar(
            select(func.count())
            .select_from(t.Retailer)
            .where(t.Retailer.flower_node_id.is_not(None))
        )
        campaigns = dict(
            session.execute(select(t.Campaign.status, func.count()).group_by(t.Campaign.status))
            .tuples()
            .all()
        )
        latest_model = session.scalar(
            select(t.ModelVersion.version).order_by(t.ModelVersion.id.desc()).limit(1)
        )
    return {
        "version": __version__,
        "database": {"reachable": coord.db.ping(), "dialect": coord.db.dialect},
        "superlink": {
            "address": coord.superlink_address,
            "reachable": superlink_reachable(coord),
        },
        "retailers": {
            "active": int(retailers.get("active", 0)),
            "registered_with_superlink": int(registered or 0),
            "total": int(sum(retailers.values())),
        },
        "campaigns": {str(k): int(v) for k, v in campaigns.items()},
        "latest_model": latest_model,
        "audit_events": coord.audit.count(),
    }
