"""Child processes that never outlive the demo, also when it is interrupted.

Why: a demo that leaves a SuperLink or a SuperNode running after Ctrl-C is worse than no demo.
Each child runs in its own session (so a terminal's Ctrl-C reaches only the demo, which then
stops the children in order), logs to its own file, and :meth:`ChildProcesses.stop_all` ends
what is left, process groups included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

COORDINATOR = "coordinator"  # the child stopped last


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class ChildProcesses:
    """Starts children with their own session and a log file each; stops them all."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], *, cwd: Path | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603  # our own interpreter and modules
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=cwd,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def stop(self, children: list[Child], grace: float = 20.0) -> None:
        """SIGTERM every child at once (each stops its own children), then SIGKILL whatever of
        their sessions is left after ``grace`` s."""
        for child in children:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.1, deadline - time.monotonic()))
        for child in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5)

    def stop_all(self, grace: float = 20.0) -> None:
        """The nodes together first, then the coordinator (children named "coordinator")."""
        last = [c for c in self.children if c.name == COORDINATOR]
        self.stop([c for c in self.children if c.name != COORDINATOR], grace)
        self.stop(last, grace)


def processes_under(directory: Path) -> list[int]:
    """Live processes whose command line names a path inside ``directory`` (leftover check)."""
    marker = str(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (entry / "stat").read_text()
        except OSError:
            continue
        if state[state.rfind(")") + 2 :].split()[:1] in (["Z"], ["X"]):
            continue
        if any(marker in arg for arg in args):
            found.append(int(entry.name))
    return found


def command_of(pid: int) -> str:
    """A process's program and first argument, e.g. ``python -m coordinator.cli`` (for logs)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    args = [a for a in args if a]
    shown = [Path(args[0]).name] if args else []
    for flag in ("-m", "-c"):
        if flag in args[:-1]:
            shown += [flag, args[args.index(flag) + 1][:40]]
            break
    else:
        shown += [Path(a).name for a in args[1:2]]
    return " ".join(shown) or "?"


def end_leftovers(directory: Path, grace: float = 5.0) -> dict[int, str]:
    """SIGTERM, then SIGKILL, every process still serving ``directory``; returns their pids
    and commands."""
    leftovers = {pid: command_of(pid) for pid in processes_under(directory)}
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and processes_under(directory):
        time.sleep(0.2)
    for pid in processes_under(directory):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return leftovers


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt, so a run stops its children cleanly.

    Set explicitly: a shell starts background jobs with SIGINT ignored (Python then never
    raises KeyboardInterrupt), and SIGTERM would otherwise end this process and orphan them."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
