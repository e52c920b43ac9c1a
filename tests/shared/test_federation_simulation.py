"""Integration: the real ServerApp and ClientApp, SecAgg+ and DP-SGD, in Flower's simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.cli import main as coordinator
from shared.insights.store import InsightStore
from shared.privacy import PrivacyLedger
from shared.synthetic import generate_demo


def test_two_private_secure_rounds_on_five_synthetic_retailers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_demo(tmp_path / "partitions", retailers=5, seed=21, scale=0.4)
    work = tmp_path / "work"
    code = coordinator(
        [
            "simulate",
            "--partitions",
            str(tmp_path / "partitions"),
            "--rounds",
            "2",
            "--epsilon",
            "2",
            "--local-epochs",
            "1",
            "--workdir",
            str(work),
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    statistics = [r for r in report["rounds"] if r["stage"] == "statistics"]
    training = [r for r in report["rounds"] if r["stage"] == "train"]
    assert [r["status"] for r in statistics] == ["aggregated"]
    assert [r["status"] for r in training] == ["aggregated", "aggregated"]
    assert all(r["participants"] == 5 for r in report["rounds"])
    assert training[1]["loss"] is not None
    assert report["market"]["contributors"] == 5
    assert report["market"]["pairs_published"] > 0
    assert len(report["retailers"]) == 5
    for retailer in report["retailers"]:
        assert retailer["rounds_joined"] == 2
        assert retailer["collaboration"].startswith("Forecasts are")
        # training's 2 plus the basket statistics' 1 (RDP composition keeps it below the sum)
        assert 1.0 < retailer["epsilon_spent"] <= 3.0 + 1e-6
        assert retailer["delta"] == 1e-5
        assert retailer["noise_multiplier"] > 0
        for key in ("wape_local_only", "wape_federated", "wape_centralised"):
            assert retailer[key] > 0
    ledgers = sorted((work / "nodes").iterdir())
    assert len(ledgers) == 5
    for node in ledgers:
        budget = PrivacyLedger.in_data_dir(node).status()
        assert not budget.pending_release_ids  # every charge committed, none left dangling
        kinds = sorted(r.kind.value for r in budget.releases)
        assert kinds.count("count") == 1  # the basket statistics, charged once
        assert (node / "market" / "statistics.json").exists()
        # every insight computed on the node from its data, the global model and the market
        with InsightStore.in_data_dir(node, create=False) as store:
            latest = store.latest_by_kind()
        assert sorted(latest) == ["bundles", "forecast", "pricing", "trends", "value"]
        assert latest["pricing"].rows and latest["forecast"].rows and latest["trends"].rows
        assert {b.model_version for b in latest.values()} == {latest["pricing"].model_version}
        assert latest["pricing"].model_version.startswith("g-")  # the federated model
        html = (node / "insights-report.html").read_text("utf-8")
        for kind in ("pricing", "forecast", "bundles", "trends", "value"):
            assert f'<section id="{kind}">' in html
    categories = report["categories"]
    assert categories
    for estimates in categories.values():
        for model in ("federated", "centralised"):
            ci = estimates[model]
            if ci is not None:
                assert ci["low"] <= ci["estimate"] <= ci["high"] <= 0


def test_too_few_partitions_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_demo(tmp_path / "partitions", retailers=3, seed=2, scale=0.3)
    code = coordinator(["simulate", "--partitions", str(tmp_path / "partitions"), "--json"])
    assert code == 1
    assert "at least 5" in json.loads(capsys.readouterr().out)["error"]
