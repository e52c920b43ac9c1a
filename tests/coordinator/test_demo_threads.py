"""The demo's nodes share one machine: each process gets its share of the cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.demo import steps


@pytest.mark.parametrize(
    ("cores", "retailers", "threads"), [(2, 5, "1"), (16, 5, "3"), (64, 10, "6"), (1, 1, "1")]
)
def test_threads_per_node_process(
    monkeypatch: pytest.MonkeyPatch, cores: int, retailers: int, threads: str
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(steps.os, "cpu_count", lambda: cores)
    assert steps.shared_machine_env(retailers) == {"OMP_NUM_THREADS": threads}


def test_a_thread_count_the_user_chose_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert steps.shared_machine_env(5) == {}


def test_the_demo_starts_its_children_with_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(steps.os, "cpu_count", lambda: 2)
    federation = steps.DemoFederation(steps.DemoOptions(workdir=tmp_path), progress=print)
    assert federation.children.env == {"OMP_NUM_THREADS": "1"}


def test_the_round_timeout_grows_with_the_shops_on_this_machine(tmp_path: Path) -> None:
    five = steps.DemoFederation(steps.DemoOptions(workdir=tmp_path), progress=print)
    ten = steps.DemoFederation(steps.DemoOptions(workdir=tmp_path, retailers=10), print)
    assert five.round_timeout == steps.ROUND_TIMEOUT
    assert ten.round_timeout == 2 * steps.ROUND_TIMEOUT
