"""Demo steps that need no federation: threads per process, timeouts, a node that missed
the final model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coordinator.demo import steps
from shared.node_runtime.events import EventKind, EventLog


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


def _fake_cli(record: Path, code: int) -> list[str]:
    """Stands in for ``retail-node``: notes the command it was given, exits with ``code``."""
    script = (
        "import sys; "
        f"open({str(record)!r}, 'a').write(' '.join(sys.argv[1:3]) + chr(10)); "
        f"sys.exit({code})"
    )
    return [sys.executable, "-c", script]


def test_a_node_that_missed_the_final_model_gets_its_insights_from_its_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    federation = steps.DemoFederation(steps.DemoOptions(workdir=tmp_path), lines.append)
    done, missed = tmp_path / "shop-1", tmp_path / "shop-2"
    EventLog(done).append(EventKind.INSIGHTS_REFRESHED, message="refreshed by its runner")
    missed.mkdir()
    federation.nodes = [
        steps.DemoNode("shop-1", done, tmp_path / "a.csv"),
        steps.DemoNode("shop-2", missed, tmp_path / "b.csv"),
    ]
    record = tmp_path / "commands.txt"
    federation.node_cli = _fake_cli(record, 0)
    monkeypatch.setattr(steps, "STRAGGLER_GRACE", 0.2)
    federation._compute_insights()
    assert record.read_text().splitlines() == [
        "insights refresh",
        f"report {missed / 'insights-report.html'}",
    ]
    assert any("shop-2: missed the final model" in line for line in lines)
    assert any("shop-1: insights stored" in line for line in lines)

    federation.node_cli = _fake_cli(record, 1)
    with pytest.raises(steps.DemoError, match="shop-2"):
        federation._compute_insights()
