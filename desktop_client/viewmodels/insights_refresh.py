"""Recomputing the insights (owner mode only) in a child process.

Why a child process: the engines need torch, pandas and numpy and run for a while; in a child
process (``retail-node insights refresh``, the same command the owner can type) the window
never imports torch, never stalls on the GIL, and a crash in the engines cannot take the app
down. View-only mode never builds this command.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from desktop_client.viewmodels.insights import tr


@dataclass(frozen=True)
class RefreshCommand:
    program: str
    arguments: tuple[str, ...]


@dataclass(frozen=True)
class RefreshOutcome:
    ok: bool
    message: str


def refresh_command(node_dir: Path, python: str = sys.executable) -> RefreshCommand:
    """``retail-node insights refresh --data-dir NODE --json`` run by this interpreter."""
    return RefreshCommand(
        python,
        (
            "-m",
            "desktop_client.node_cli",
            "insights",
            "refresh",
            "--data-dir",
            str(Path(node_dir)),
            "--json",
        ),
    )


def refresh_outcome(exit_code: int, stdout: str) -> RefreshOutcome:
    """The child's result in plain words from its JSON output (its stderr, which may hold a
    traceback, is never shown)."""
    data: object = None
    try:
        data = json.loads(stdout) if stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    if exit_code == 0 and isinstance(data, dict) and isinstance(data.get("batches"), list):
        count = len(data["batches"])
        return RefreshOutcome(
            True, tr("Insights refreshed: {count} kinds recomputed.").format(count=count)
        )
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return RefreshOutcome(
            False, tr("The insights could not be refreshed: {reason}").format(reason=data["error"])
        )
    return RefreshOutcome(
        False,
        tr(
            "The insights could not be refreshed (the insight engine stopped with code "
            "{code}). Try again; if it keeps failing, run `retail-node insights refresh` "
            "and send the shop owner's support contact what it prints."
        ).format(code=exit_code),
    )
