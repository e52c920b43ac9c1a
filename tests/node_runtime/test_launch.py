"""The node-process launcher: the commands it builds (installed and frozen) and the one Flower
internal it patches (the SuperNode's idle pull), checked against the pinned flwr."""

from __future__ import annotations

import sys
import time

import pytest

from shared.node_runtime import launch
from shared.node_runtime.launch import (
    FLOWER_IDLE_SLEEP,
    LAUNCH_MODULE,
    RUNNER_MODULE,
    node_process_command,
    node_process_main,
    shorten_idle_pull,
)


def test_installed_commands_run_our_modules_without_the_working_directory() -> None:
    supernode = node_process_command("supernode", ["--superlink", "127.0.0.1:1"])
    runner = node_process_command("runner", ["--node-dir", "/n"])
    assert supernode == [sys.executable, "-P", "-m", LAUNCH_MODULE, "supernode", "--superlink",
                         "127.0.0.1:1"]  # fmt: skip
    assert runner == [sys.executable, "-P", "-m", RUNNER_MODULE, "--node-dir", "/n"]


def test_a_frozen_app_re_executes_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert node_process_command("runner", ["--x"]) == [sys.executable, "--node-process",
                                                       "runner", "--x"]  # fmt: skip


def test_unknown_kinds_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown node process"):
        node_process_command("superlink", [])
    assert node_process_main(["superlink"]) == 2
    assert "usage" in capsys.readouterr().err
    assert node_process_main(["supernode", "--pull-interval", "10"]) == 2


def test_the_supernode_idle_sleep_is_shortened_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails loudly if flwr's SuperNode loop stops using ``time.sleep(3)`` as 1.42 does."""
    import flwr.supernode.start_client_internal as loop

    source = __import__("inspect").getsource(loop.start_client_internal)
    assert f"time.sleep({FLOWER_IDLE_SLEEP})" in source
    monkeypatch.setattr(loop, "time", time)
    patched = shorten_idle_pull(0.05)
    assert patched is loop
    slept: list[float] = []
    monkeypatch.setattr(launch.time, "sleep", slept.append)
    loop.time.sleep(FLOWER_IDLE_SLEEP)
    loop.time.sleep(0.5)
    assert slept == [0.05, 0.5]
    assert loop.time.monotonic is time.monotonic  # everything else passes through
    shorten_idle_pull(0.2)  # applying twice is allowed (a restarted supervisor in one process)
