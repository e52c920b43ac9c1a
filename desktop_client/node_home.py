"""Where a retailer node keeps its own files: saved mappings, canonical frames, keys, ledger.

One directory per node, chosen by ``--data-dir``, else ``$RETAIL_NODE_HOME``, else the
platform's user data directory, so several demo nodes can live side by side on one machine.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from platformdirs import user_data_dir

if TYPE_CHECKING:  # shared.ingest loads pandas/pyarrow: not before the app's window shows
    from shared.ingest import MappingStore

APP_NAME = "retail-intelligence"


@dataclass(frozen=True)
class NodeHome:
    root: Path

    @classmethod
    def locate(cls, data_dir: Path | None = None) -> NodeHome:
        if data_dir is not None:
            return cls(data_dir.expanduser())
        env = os.environ.get("RETAIL_NODE_HOME")
        if env:
            return cls(Path(env).expanduser())
        return cls(Path(user_data_dir(APP_NAME, appauthor=False)))

    @property
    def mappings(self) -> MappingStore:
        from shared.ingest import MappingStore

        return MappingStore(self.root / "mappings")

    @property
    def canonical_dir(self) -> Path:
        return self.root / "canonical"

    def customer_key(self) -> bytes:
        """Per-node key for hashing customer numbers; created once, readable only by the owner."""
        path = self.root / "keys" / "customer-hash.key"
        if path.exists():
            return path.read_bytes()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key
