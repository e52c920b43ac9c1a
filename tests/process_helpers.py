"""Helpers shared by the real-process tests: wait for a condition, find our processes."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.3) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (a deadline, not a check
    on wall-clock time); returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def processes_naming(text: str) -> list[str]:
    """Processes (other than this one) whose command line contains ``text``: leftovers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found
