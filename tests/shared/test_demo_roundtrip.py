"""Every dialect the generator writes comes back through the importer with exact totals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.ingest import ImportOptions, import_file, product_day
from shared.ingest.aggregates import MICROS
from shared.synthetic import DIALECTS, generate_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, retailers=len(DIALECTS), seed=11)
    truth = json.loads((out / "ground_truth.json").read_text("utf-8"))
    return out, truth


def _retailers(truth: dict) -> list[dict]:
    return truth["retailers"]


def test_each_retailer_uses_a_different_dialect(demo: tuple[Path, dict]) -> None:
    _, truth = demo
    dialects = [r["dialect"] for r in _retailers(truth)]
    assert sorted(dialects) == sorted(d.name for d in DIALECTS)


@pytest.mark.parametrize("index", range(len(DIALECTS)))
def test_dialect_round_trips_with_exact_totals(demo: tuple[Path, dict], index: int) -> None:
    out, truth = demo
    retailer = _retailers(truth)[index]
    result = import_file(out / retailer["file"], options=ImportOptions(customer_key=b"k" * 32))
    report = result.report
    assert report.valid, report.to_json()["errors"][:5]
    frame = result.frame
    assert frame is not None
    assert len(frame) == retailer["rows"]
    assert int(frame["quantity_sold"].sum()) == retailer["total_quantity"]
    revenue = float(np.round((frame["price"] * frame["quantity_sold"]).sum(), 2))
    assert revenue == pytest.approx(retailer["total_revenue"], abs=0.01)
    assert frame["product_id"].nunique() == retailer["products"]
    # every one of the retailer's own category labels lands on the planted taxonomy code
    labels = frame.groupby("category_label", observed=True)["category"].first().astype(str)
    assert labels.to_dict() == retailer["category_labels"]
    assert all(report.tasks[t].ready for t in report.tasks), report.to_json()["tasks"]
    daily = product_day(frame)
    assert int(daily["quantity_sold"].sum()) == retailer["total_quantity"]
    assert int(daily["revenue_micros"].sum()) == int(
        (
            np.round(frame["price"].to_numpy() * MICROS).astype(np.int64) * frame["quantity_sold"]
        ).sum()
    )
