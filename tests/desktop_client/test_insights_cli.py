"""``retail-node insights`` and ``retail-node report``: offline reading, exports, exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from desktop_client.node_cli import main
from shared.insights.store import INSIGHTS_FILENAME, InsightStore, StoredBatch

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
META: dict[str, Any] = {
    "node": "shop-1",
    "model_version": "g-1",
    "data_fingerprint": "d-1",
    "epsilon_spent": 0.5,
}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def pricing_rows(recommended: float) -> list[dict[str, Any]]:
    return [
        {
            "product_id": "P1",
            "category": "bakery",
            "current_price": 2.0,
            "recommended_price": recommended,
            "recommended_low": recommended - 0.1,
            "recommended_high": recommended + 0.1,
            "objective": "margin",
            "elasticity": -1.2,
            "revenue_change": 5.0,
            "margin_change": None,
            "market_position": "level",
        },
        {"product_id": "bad\x1b[31mid", "recommended_price": 1.0},
    ]


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A node directory with two pricing batches and one of each other kind."""
    root = tmp_path / "node"
    with InsightStore.in_data_dir(root) as store:
        store.save("pricing", pricing_rows(2.2), **META)
        store.save("pricing", pricing_rows(2.4), **{**META, "model_version": "g-2"})
        store.save(
            "forecast",
            [
                {
                    "scope": "category",
                    "key": "bakery",
                    "horizon": "weekly",
                    "period_starts": ["2024-05-06", "2024-05-13"],
                    "period_days": [7, 7],
                    "predicted": [70.0, 72.0],
                    "lower": [60.0, 61.0],
                    "upper": [80.0, 83.0],
                    "interval_level": 0.8,
                    "trend": {"direction": "up", "weekly_change_pct": 1.5},
                }
            ],
            **META,
        )
        store.save(
            "value",
            [{"node": "shop-1", "local_wape": 0.3, "federated_wape": 0.2, "message": "Closer"}],
            **META,
        )
    return root


def test_no_store_yet_is_a_clear_problem_not_a_crash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "fresh-node"
    code, out, err = run_cli(capsys, "insights", "pricing", "--data-dir", empty)
    assert code == EXIT_PROBLEM
    assert out == ""
    assert str(empty) in err
    assert "no insights yet" in err
    assert "retail-node insights refresh" in err
    assert not empty.exists()  # reading never creates the store
    code, out, _ = run_cli(capsys, "insights", "pricing", "--data-dir", empty, "--json")
    assert code == EXIT_PROBLEM
    data = json.loads(out)
    assert data["ok"] is False
    assert "retail-node insights refresh" in data["error"]


def test_a_kind_not_computed_yet_is_named(capsys: pytest.CaptureFixture[str], node: Path) -> None:
    code, _, err = run_cli(capsys, "insights", "bundles", "--data-dir", node)
    assert code == EXIT_PROBLEM
    assert f"no bundles insights yet in {node}" in err


def test_text_output_shows_the_latest_batch(capsys: pytest.CaptureFixture[str], node: Path) -> None:
    code, out, err = run_cli(capsys, "insights", "pricing", "--data-dir", node)
    assert code == EXIT_OK, err
    assert "Price recommendations for shop-1: batch #2" in out
    assert "model g-2" in out
    assert "2.40" in out
    assert "2.30-2.50" in out
    assert "2.20 " not in out  # the older batch is not shown
    assert "\x1b" not in out  # control characters from data never reach the terminal
    assert "bad?[31mid" in out
    code, out, _ = run_cli(capsys, "insights", "forecast", "--data-dir", node)
    assert code == EXIT_OK
    assert "bakery" in out
    assert "60.0-80.0" in out
    assert "up +1.5%/wk" in out
    code, out, _ = run_cli(capsys, "insights", "value", "--data-dir", node)
    assert code == EXIT_OK
    assert "Closer" in out


def test_json_output_parses_with_metadata(capsys: pytest.CaptureFixture[str], node: Path) -> None:
    code, out, err = run_cli(capsys, "insights", "pricing", "--data-dir", node, "--json")
    assert code == EXIT_OK
    assert err == ""
    data = json.loads(out)
    assert data["kind"] == "pricing"
    assert data["id"] == 2
    assert data["node"] == "shop-1"
    assert data["model_version"] == "g-2"
    assert data["data_fingerprint"] == "d-1"
    assert data["epsilon_spent"] == 0.5
    assert data["created_at"].endswith("+00:00")
    assert data["row_count"] == 2
    assert data["rows"] == pricing_rows(2.4)


def test_history_lists_newest_first(capsys: pytest.CaptureFixture[str], node: Path) -> None:
    code, out, _ = run_cli(
        capsys, "insights", "pricing", "--data-dir", node, "--history", "5", "--json"
    )
    assert code == EXIT_OK
    data = json.loads(out)
    assert [b["id"] for b in data["history"]] == [2, 1]
    assert [b["model_version"] for b in data["history"]] == ["g-2", "g-1"]
    assert "rows" not in data["history"][0]
    code, out, _ = run_cli(capsys, "insights", "pricing", "--data-dir", node, "--history", "1")
    assert code == EXIT_OK
    assert "#2" in out
    assert "#1 " not in out


def test_export_csv_and_json(
    capsys: pytest.CaptureFixture[str], node: Path, tmp_path: Path
) -> None:
    target = tmp_path / "exports" / "pricing.csv"
    code, out, _ = run_cli(capsys, "insights", "pricing", "--data-dir", node, "--export", target)
    assert code == EXIT_OK
    assert f"to {target}" in out
    with target.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["recommended_price"] for line in lines] == ["2.4", "1.0"]
    target = tmp_path / "forecast.json"
    code, out, _ = run_cli(
        capsys, "insights", "forecast", "--data-dir", node, "--export", target, "--json"
    )
    assert code == EXIT_OK
    assert json.loads(out)["exported"] == str(target)
    exported = json.loads(target.read_text("utf-8"))
    assert exported["kind"] == "forecast"
    assert exported["rows"][0]["predicted"] == [70.0, 72.0]
    target = tmp_path / "history.json"
    code, _, _ = run_cli(
        capsys, "insights", "pricing", "--data-dir", node, "--history", "2", "--export", target
    )
    assert code == EXIT_OK
    assert [b["model_version"] for b in json.loads(target.read_text("utf-8"))] == ["g-2", "g-1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--export", "out.xlsx"], "name the file .csv or .json"),
        (["--history", "0"], "--history must be at least 1"),
        (["--history", "2", "--export", "h.csv"], "export --history to a .json file"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str],
    node: Path,
    tmp_path: Path,
    extra: list[str],
    message: str,
) -> None:
    code, _, err = run_cli(capsys, "insights", "pricing", "--data-dir", node, *extra)
    assert code == EXIT_USAGE
    assert message in err
    assert not (tmp_path / "out.xlsx").exists()


def test_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["insights", "prices"])
    assert exit_info.value.code == EXIT_USAGE
    assert "invalid choice: 'prices'" in capsys.readouterr().err


def test_report_writes_one_html_file(
    capsys: pytest.CaptureFixture[str], node: Path, tmp_path: Path
) -> None:
    target = tmp_path / "report.html"
    code, out, _ = run_cli(capsys, "report", target, "--data-dir", node)
    assert code == EXIT_OK
    assert f"Wrote the insight report to {target}" in out
    assert "No insights yet for: bundles, trends" in out
    html = target.read_text("utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "Insights for shop-1" in html
    assert "No bundles insights yet." in html
    code, out, _ = run_cli(capsys, "report", target, "--data-dir", node, "--json")
    assert code == EXIT_OK
    assert json.loads(out) == {
        "report": str(target),
        "sections": {"pricing": 2, "forecast": 3, "bundles": None, "trends": None, "value": 4},
    }


def test_report_without_insights_is_a_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "report.html"
    code, _, err = run_cli(capsys, "report", target, "--data-dir", tmp_path / "none")
    assert code == EXIT_PROBLEM
    assert "retail-node insights refresh" in err
    assert not target.exists()


def test_a_corrupt_store_is_a_problem_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "node"
    root.mkdir()
    (root / INSIGHTS_FILENAME).write_bytes(b"garbage " * 200)
    code, _, err = run_cli(capsys, "insights", "value", "--data-dir", root)
    assert code == EXIT_PROBLEM
    assert str(root / INSIGHTS_FILENAME) in err
    assert "Traceback" not in err


def fake_engine(monkeypatch: pytest.MonkeyPatch, refresh: Any) -> None:
    module = types.ModuleType("shared.insights.engine")
    module.refresh_insights = refresh  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shared.insights.engine", module)


def test_refresh_calls_the_engine_for_the_node_directory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[Path] = []

    def refresh(node_dir: Path) -> list[StoredBatch]:
        calls.append(node_dir)
        with InsightStore.in_data_dir(node_dir) as store:
            return [store.save("value", [{"node": "shop-1"}], **META)]

    fake_engine(monkeypatch, refresh)
    root = tmp_path / "node"
    code, out, _ = run_cli(capsys, "insights", "refresh", "--data-dir", root, "--json")
    assert code == EXIT_OK
    assert calls == [root]
    data = json.loads(out)
    assert data["data_dir"] == str(root)
    assert [(b["kind"], b["row_count"]) for b in data["batches"]] == [("value", 1)]
    code, out, _ = run_cli(capsys, "insights", "refresh", "--data-dir", root)
    assert code == EXIT_OK
    assert f"Refreshed the insights in {root}" in out
    assert "value" in out


def test_refresh_without_data_is_a_problem(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from shared.insights.context import InsightInputError

    def refresh(node_dir: Path) -> list[StoredBatch]:
        raise InsightInputError(f"{node_dir}: no global model yet; join a training campaign")

    fake_engine(monkeypatch, refresh)
    code, _, err = run_cli(capsys, "insights", "refresh", "--data-dir", tmp_path)
    assert code == EXIT_PROBLEM
    assert "no global model yet" in err
    code, _, err = run_cli(
        capsys, "insights", "refresh", "--data-dir", tmp_path, "--export", "x.csv"
    )
    assert code == EXIT_USAGE


def test_the_installed_command_never_prints_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "desktop_client.node_cli",
            "insights",
            "trends",
            "--data-dir",
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == EXIT_PROBLEM
    assert "Traceback" not in result.stderr
    assert "no insights yet" in result.stderr


def test_a_reader_that_leaves_early_gets_no_traceback(node: Path) -> None:
    """`retail-node insights pricing --json | head -1`: the pipe closes before the output."""
    command = ["insights", "pricing", "--json", "--data-dir", str(node)]
    process = subprocess.Popen(
        [sys.executable, "-m", "desktop_client.node_cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # long before the interpreter has started, let alone printed
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
