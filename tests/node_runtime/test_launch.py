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


def test_object_pulls_back_off_from_50_ms_where_nodes_pull_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails loudly if flwr stops pulling message objects with these back-off functions."""
    import functools
    import inspect

    from shared.federation.object_pulls import (
        OBJECT_PULL_BACKOFF,
        OBJECT_PULL_BACKOFF_CAP,
        OBJECT_PULL_MAX_TIME,
        quicken_object_pulls,
    )
    from shared.node_runtime.launch import NODE_OBJECT_PULLS as OBJECT_PULLS

    modules = [__import__("importlib").import_module(name) for name, _ in OBJECT_PULLS]
    for module, (_, name) in zip(modules, OBJECT_PULLS, strict=True):
        monkeypatch.setattr(module, name, getattr(module, name))  # undone after the test
        original = getattr(module, name)
        assert inspect.signature(original).parameters["initial_backoff"].default == 1
    # The SuperNode pulls with ``pull_objects``; the runner's pull_task_input inflates with the
    # other: both look the name up in their module when called.
    assert "pull_objects(" in inspect.getsource(modules[0])
    assert "pull_and_inflate_object_from_tree(" in inspect.getsource(modules[1].pull_task_input)
    assert quicken_object_pulls(OBJECT_PULLS) == modules
    quicken_object_pulls(OBJECT_PULLS)  # twice is fine: the back-off is set, not stacked
    for module, (_, name) in zip(modules, OBJECT_PULLS, strict=True):
        patched = getattr(module, name)
        assert isinstance(patched, functools.partial)
        assert not isinstance(patched.func, functools.partial)
        assert patched.keywords == {
            "initial_backoff": OBJECT_PULL_BACKOFF,
            "backoff_cap": OBJECT_PULL_BACKOFF_CAP,
            "max_time": OBJECT_PULL_MAX_TIME,
        }


def test_a_moved_pull_function_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import flwr.supernode.runtime.run_clientapp as clientapp
    import flwr.supernode.start_client_internal as loop

    from shared.federation.object_pulls import quicken_object_pulls
    from shared.node_runtime.launch import NODE_OBJECT_PULLS

    monkeypatch.setattr(loop, "pull_objects", loop.pull_objects)  # undone after the test
    monkeypatch.setattr(clientapp, "pull_and_inflate_object_from_tree", lambda tree: tree)
    with pytest.raises(RuntimeError, match="re-measure"):
        quicken_object_pulls(NODE_OBJECT_PULLS)
