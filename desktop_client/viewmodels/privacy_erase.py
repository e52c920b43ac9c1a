"""Deleting every local copy the app made of the shop's data (the right to erasure, locally).

What goes: the prepared sales frame, saved mappings, the released-update cache, models,
market statistics, the insight store, the event stream, run files and the customer-hashing
key; the enrollment too, only when the owner asks. What stays, and why: the privacy ledger and
the consent history. They hold no sales data, and the ledger is the only proof of what already
left this computer: deleting it would let the budget restart from zero, which would weaken
the very privacy promise it keeps. The original export file is the owner's and never touched.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from desktop_client.viewmodels.data_files import CANONICAL_FILE, INSIGHTS_FILENAME, NODE_FILE
from shared.enrollment import ENROLLMENT_DIR
from shared.node_runtime.events import EVENTS_FILE
from shared.node_runtime.supervisor import read_state

# Relative to the node directory; sqlite side files go with their database.
LOCAL_COPIES: tuple[str, ...] = (
    CANONICAL_FILE,
    "canonical",
    NODE_FILE,
    "mappings",
    "released",
    "model",
    "market",
    INSIGHTS_FILENAME,
    INSIGHTS_FILENAME + "-wal",
    INSIGHTS_FILENAME + "-shm",
    INSIGHTS_FILENAME + "-journal",
    EVENTS_FILE,
    "run",
    "keys",
    "cache",
)
KEPT_REASON = (
    "The privacy ledger and your consent history are kept: they hold no sales data and are the "
    "record of what already left this computer, so your budget cannot silently start again."
)


class EraseRefused(Exception):
    """Deleting now would break something; the message says what to do first."""


@dataclass(frozen=True)
class EraseResult:
    removed: tuple[str, ...]  # names relative to the node directory
    kept_enrollment: bool


def local_copies(node_dir: Path, *, include_enrollment: bool = False) -> list[Path]:
    """What would be deleted, existing entries only (for the confirmation dialog)."""
    names = [*LOCAL_COPIES, *((ENROLLMENT_DIR,) if include_enrollment else ())]
    return [Path(node_dir) / name for name in names if (Path(node_dir) / name).exists()]


def node_running(node_dir: Path) -> bool:
    state = read_state(Path(node_dir))
    return state is not None and state.state != "stopped" and state.owner.alive()


def erase_local_copies(node_dir: Path, *, include_enrollment: bool = False) -> EraseResult:
    """Delete the app's local copies; refused while the node takes part in training."""
    node_dir = Path(node_dir)
    if node_running(node_dir):
        raise EraseRefused(
            "the node is taking part in training right now: leave training first (Training "
            "page), then delete your local data"
        )
    removed: list[str] = []
    for path in local_copies(node_dir, include_enrollment=include_enrollment):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path.name)
    return EraseResult(tuple(removed), kept_enrollment=not include_enrollment)
