"""The runner's insight refresh: a low-priority child per step, one event for the outcome."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared.node_runtime import insight_refresh
from shared.node_runtime.events import EventKind, read_events
from shared.node_runtime.insight_refresh import REFRESH_NICENESS, InsightRefresher

# Stands in for `retail-node ...`: reports its own niceness, fails when asked to.
STEP = (
    "import os, sys, time; time.sleep(0.3); print('STEP-DONE', sys.argv[1:3], 'nice', os.nice(0)); "
    "sys.exit(3 if 'fail' in sys.argv else 0)"
)


@pytest.fixture
def fake_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        insight_refresh, "node_cli_command", lambda args: [sys.executable, "-c", STEP, *args]
    )


@pytest.mark.skipif(sys.platform == "win32", reason="niceness is POSIX")
def test_both_steps_run_at_low_priority_and_end_in_one_event(
    tmp_path: Path, fake_cli: None
) -> None:
    refresher = InsightRefresher(tmp_path)
    try:
        assert refresher.submit(run_id=7, model_round=3).result(60) is True
    finally:
        refresher.close()
    log = (tmp_path / "run" / "insights.log").read_text()
    assert log.count("STEP-DONE") == 2
    assert "['insights', 'refresh']" in log and "['report'," in log
    nice = [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if "STEP-DONE" in line]
    assert nice and all(n >= REFRESH_NICENESS for n in nice), log
    [event] = [e for e in read_events(tmp_path).events if e.kind == EventKind.INSIGHTS_REFRESHED]
    assert event.round == 3 and event.data["report"].endswith("insights-report.html")


def test_a_failed_step_ends_in_an_error_event_with_what_to_do(
    tmp_path: Path, fake_cli: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        insight_refresh,
        "node_cli_command",
        lambda args: [sys.executable, "-c", STEP, *args, "fail"],
    )
    refresher = InsightRefresher(tmp_path)
    try:
        assert refresher.submit(run_id=7, model_round=3).result(60) is False
    finally:
        refresher.close()
    events = read_events(tmp_path).events
    assert not [e for e in events if e.kind == EventKind.INSIGHTS_REFRESHED]
    [error] = [e for e in events if e.kind == EventKind.ERROR]
    assert error.data["step"] == "insights" and error.data["error"] == "exit 3"
    assert "retail-node insights refresh" in error.message
