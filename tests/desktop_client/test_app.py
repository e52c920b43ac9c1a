"""``retail-desktop`` as a process: --self-test (the installer's smoke test), --viewer, and torch
staying unloaded until the window is on screen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ALL_PAGES = ["connect", "data", "privacy", "training", "insights", "reports"]
TIMEOUT = 600  # seconds; a busy CI machine builds every page, one of them imports torch


def _run(
    tmp_path: Path, *args: str, timing: bool = False
) -> tuple[int, dict[str, Any], str, list[dict[str, Any]]]:
    env = dict(os.environ)
    if timing:
        env["RETAIL_DESKTOP_TIMING"] = "1"
    env.update(
        QT_QPA_PLATFORM="offscreen",
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # QSettings of this run only
        RETAIL_NODE_HOME=str(tmp_path / "node"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "desktop_client.app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary; stdout={done.stdout!r} stderr={done.stderr[-2000:]!r}"
    objects = [json.loads(line) for line in lines]
    return done.returncode, objects[-1], done.stderr, objects[:-1]


def test_self_test_walks_every_page_and_exits_0_only_when_all_work(tmp_path: Path) -> None:
    code, summary, stderr, _ = _run(tmp_path, "--self-test")
    assert summary["pages"] == ALL_PAGES
    assert summary["viewer"] is False
    assert summary["ok"] is (not summary["errors"])
    assert code == (0 if summary["ok"] else 1), stderr[-2000:]
    assert "training" not in summary["errors"]
    assert summary["torch_before_window"] is False  # torch loads, if at all, after the window


def test_self_test_in_the_store_managers_view_needs_nothing_but_the_node_dir(
    tmp_path: Path,
) -> None:
    code, summary, stderr, _ = _run(
        tmp_path, "--viewer", "--self-test", "--data-dir", str(tmp_path)
    )
    assert summary == {
        "ok": True,
        "viewer": True,
        "pages": ["insights", "reports"],
        "errors": {},
        "torch_before_window": False,
    }, stderr[-2000:]
    assert code == 0


def test_timing_reports_when_the_window_was_first_shown(tmp_path: Path) -> None:
    started = time.time()
    code, summary, _, before = _run(tmp_path, "--viewer", "--self-test", timing=True)
    assert code == 0 and summary["ok"] is True
    assert len(before) == 1
    assert started <= before[0]["window_shown"] <= time.time()


def test_help_names_the_viewer_and_self_test_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "desktop_client.app", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "--viewer" in done.stdout and "--self-test" in done.stdout
    assert "--data-dir" in done.stdout
