"""How a node's two Flower processes are started: as modules of this install, or of a frozen app.

Why a launcher instead of the ``flower-supernode`` script:

* Speed. Flower 1.42's SuperNode sleeps a fixed 3 s whenever a pull finds no message
  (``flwr.supernode.start_client_internal``). A SecAgg+ round is six message exchanges, so with
  five nodes that idle sleep alone adds about 15 s per round (the slowest of five nodes waits
  2.5 s on average at each exchange). Here the idle wait is shortened to ``--pull-interval``
  (default 0.5 s: a few small gRPC calls a second per node, cheap for a SuperLink serving a
  few dozen shops). With :mod:`shared.node_runtime.flower_runner` and
  :mod:`shared.federation.object_pulls`, this is one of three places that reach into Flower
  internals; flwr is pinned exactly and ``tests/node_runtime/test_launch.py`` fails loudly if
  a patched name moves.
* Speed, again. Flower stores a message before its content has arrived, and a pull that finds
  an object missing backs off 1 s, 2 s, 4 s...: the SuperNode pulling from the SuperLink, and
  the runner pulling from the SuperNode (measured: 6.9 s to pull one SecAgg+ training message
  with five nodes on two cores). :func:`shared.federation.object_pulls.quicken_object_pulls`
  starts that back-off at 0.05 s.
* Frozen installs. A PyInstaller app has no ``flower-supernode`` script and no ``python -m``;
  it re-executes itself as ``APP --node-process KIND ...`` and its entry calls
  :func:`node_process_main`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from shared.federation.object_pulls import quicken_object_pulls

LAUNCH_MODULE = "shared.node_runtime.launch"
RUNNER_MODULE = "shared.node_runtime.flower_runner"
FROZEN_FLAG = "--node-process"
FROZEN_NODE_CLI_FLAG = "--node-cli"
NODE_CLI_MODULE = "desktop_client.node_cli"
DEFAULT_PULL_INTERVAL = 0.5
FLOWER_IDLE_SLEEP = 3  # the literal Flower 1.42 sleeps after an empty pull
PATCHED_MODULE = "flwr.supernode.start_client_internal"
# Where Flower 1.42 pulls a message's objects on a node: the SuperNode from the SuperLink, the
# ClientApp side (our runner) from the SuperNode.
NODE_OBJECT_PULLS = (
    (PATCHED_MODULE, "pull_objects"),
    ("flwr.supernode.runtime.run_clientapp", "pull_and_inflate_object_from_tree"),
)


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def node_process_command(kind: str, args: Sequence[str]) -> list[str]:
    """The argv that starts one node process (``kind``: supernode or runner) from this install."""
    if kind not in ("supernode", "runner"):
        raise ValueError(f"unknown node process kind {kind!r}")
    if is_frozen():
        return [sys.executable, FROZEN_FLAG, kind, *args]
    # -P: the working directory is not on sys.path, so only installed code runs.
    module = RUNNER_MODULE if kind == "runner" else LAUNCH_MODULE
    prefix = [] if kind == "runner" else ["supernode"]
    return [sys.executable, "-P", "-m", module, *prefix, *args]


def node_cli_command(args: Sequence[str]) -> list[str]:
    """The argv of a ``retail-node`` command from this install (or the frozen app)."""
    if is_frozen():
        return [sys.executable, FROZEN_NODE_CLI_FLAG, *args]
    return [sys.executable, "-P", "-m", NODE_CLI_MODULE, *args]


class _ShortIdleTime:
    """Stands in for the ``time`` module inside Flower's SuperNode loop: the fixed idle sleep
    after an empty pull becomes ``interval``; every other use of ``time`` is passed through."""

    def __init__(self, interval: float) -> None:
        self._interval = interval

    def sleep(self, seconds: float) -> None:
        time.sleep(self._interval if seconds == FLOWER_IDLE_SLEEP else seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def shorten_idle_pull(interval: float) -> ModuleType:
    """Patch the SuperNode loop's idle sleep; returns the patched module (tests inspect it)."""
    module = importlib.import_module(PATCHED_MODULE)
    if getattr(module, "time", None) is not time and not isinstance(
        getattr(module, "time", None), _ShortIdleTime
    ):
        raise RuntimeError(
            f"{PATCHED_MODULE} no longer uses the time module as flwr 1.42 did; "
            "re-measure Flower's idle pull before changing the pin"
        )
    module.time = _ShortIdleTime(interval)  # type: ignore[attr-defined]
    return module


def run_supernode(args: Sequence[str]) -> int:
    """``flower-supernode`` in this process, with a shorter idle pull (see module doc)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--pull-interval", type=float, default=DEFAULT_PULL_INTERVAL)
    ours, flower_args = parser.parse_known_args(list(args))
    if not 0.05 <= ours.pull_interval <= FLOWER_IDLE_SLEEP:
        print("--pull-interval must be between 0.05 and 3 seconds", file=sys.stderr)
        return 2
    shorten_idle_pull(ours.pull_interval)
    quicken_object_pulls(NODE_OBJECT_PULLS)
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv = ["flower-supernode", *flower_args]
    try:
        flower_supernode()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return 0


def node_process_main(argv: Sequence[str]) -> int:
    """Run one node process in this process: ``[kind, *args]``, kind supernode or runner."""
    if not argv or argv[0] not in ("supernode", "runner"):
        print("usage: --node-process {supernode,runner} [ARGS...]", file=sys.stderr)
        return 2
    kind, rest = argv[0], list(argv[1:])
    if kind == "supernode":
        return run_supernode(rest)
    from shared.node_runtime.flower_runner import main as runner_main

    return runner_main(rest)


if __name__ == "__main__":
    sys.exit(node_process_main(sys.argv[1:]))
