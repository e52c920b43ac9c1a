"""Exports (CSV, JSON) and the self-contained HTML report."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from shared.insights import svg_charts
from shared.insights.export import ExportError, export_csv, export_file, export_json
from shared.insights.html_report import render_report, write_report
from shared.insights.store import KINDS, InsightStore, StoredBatch

HOSTILE = "<script>alert(1)</script>"
GENERATED = datetime(2024, 5, 2, 8, 30, tzinfo=UTC)


def batch(kind: str, rows: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> StoredBatch:
    return StoredBatch(
        id=KINDS.index(kind) + 1,
        kind=kind,
        node="shop-1",
        created_at=datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
        model_version=f"g-{kind}",
        data_fingerprint="d-feedbeef",
        epsilon_spent=1.25,
        rows=rows,
        meta=meta or {},
        row_count=len(rows),
    )


def pricing_batch() -> StoredBatch:
    rows: list[dict[str, Any]] = [
        {
            "product_id": HOSTILE,
            "category": "bakery",
            "current_price": 2.0,
            "recommended_price": 2.2,
            "recommended_low": 2.1,
            "recommended_high": 2.3,
            "elasticity": -1.4,
            "objective": "margin",
            "revenue_change": -3.5,
            "margin_change": 4.0,
            "market_position": "below",
            "note": "=HYPERLINK(evil)",
        },
        {"product_id": "P2", "current_price": None, "recommended_price": 3.0},
    ]
    prices = [1.6, 1.8, 2.0, 2.2, 2.4]
    units = [130.0, 115.0, 100.0, 90.0, 80.0]
    curve = {
        "product_id": HOSTILE,
        "prices": prices,
        "units": units,
        "units_low": [u * 0.9 for u in units],
        "units_high": [u * 1.1 for u in units],
        "revenue": [p * u for p, u in zip(prices, units, strict=True)],
        "revenue_low": [p * u * 0.9 for p, u in zip(prices, units, strict=True)],
        "revenue_high": [p * u * 1.1 for p, u in zip(prices, units, strict=True)],
        "margin": None,
        "current_price": 2.0,
        "recommended_price": 2.2,
    }
    return batch("pricing", rows, {"curves": [curve]})


def forecast_batch() -> StoredBatch:
    def row(scope: str, key: str, horizon: str, predicted: list[float]) -> dict[str, Any]:
        return {
            "scope": scope,
            "key": key,
            "category": "dairy",
            "horizon": horizon,
            "period_starts": [f"2024-05-0{i + 1}" for i in range(len(predicted))],
            "period_days": [1] * len(predicted),
            "predicted": predicted,
            "lower": [p * 0.8 for p in predicted],
            "upper": [p * 1.2 for p in predicted],
            "interval_level": 0.8,
            "seasonality": {"saturday": 1.3},
            "trend": {"direction": "up", "weekly_change_pct": 2.0, "level_ratio": 1.1},
        }

    return batch(
        "forecast",
        [
            row("category", "dairy", "daily", [10.0, 12.0, 11.0]),
            row("category", "dairy", "weekly", [70.0, 75.0]),
            row("product", "P7", "daily", [1.0, 2.0, 3.0]),
        ],
    )


def bundles_batch() -> StoredBatch:
    return batch(
        "bundles",
        [
            {
                "bundle_id": "B1",
                "products": ["P1", "P2"],
                "categories": ["bakery", "dairy"],
                "bundle_price": 4.5,
                "individual_prices": [2.5, 2.5],
                "discount_pct": 10.0,
                "expected_lift": 1.8,
                "confidence": 0.7,
                "target_segments": ["families", "weekend"],
                "score": 0.9,
                "context": "bought together",
            }
        ],
    )


def trends_batch() -> StoredBatch:
    weeks = ["2024-04-01", "2024-04-08", "2024-04-15"]
    return batch(
        "trends",
        [
            {
                "category": "bakery",
                "weeks": weeks,
                "index": [100.0, None, 104.0],
                "contributors": 7,
                "status": "published",
                "reason": "",
            },
            {
                "category": "tobacco",
                "weeks": [],
                "index": [],
                "contributors": 2,
                "status": "withheld",
                "reason": "fewer than 5 shops contributed",
            },
        ],
    )


def value_batch() -> StoredBatch:
    message = "Forecasts are 23% closer with the federation than with your data alone"
    return batch(
        "value",
        [
            {
                "node": "shop-1",
                "federated_wape": 0.23,
                "local_wape": 0.3,
                "improvement_pct": 23.3,
                "message": message,
                "holdout_days": 28,
                "examples": 412,
            }
        ],
    )


def all_batches() -> dict[str, StoredBatch]:
    return {
        "pricing": pricing_batch(),
        "forecast": forecast_batch(),
        "bundles": bundles_batch(),
        "trends": trends_batch(),
        "value": value_batch(),
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text outside tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    parser.close()
    return parser


# -- CSV ------------------------------------------------------------------------------------


def test_pricing_csv_has_a_header_and_one_line_per_product(tmp_path: Path) -> None:
    path = export_csv(pricing_batch(), tmp_path / "pricing.csv")
    lines = read_csv(path)
    assert [line["product_id"] for line in lines] == [HOSTILE, "P2"]
    assert lines[0]["recommended_price"] == "2.2"
    assert lines[0]["revenue_change"] == "-3.5"  # negative numbers stay numbers
    assert lines[0]["note"] == "'=HYPERLINK(evil)"  # a formula is defused
    assert lines[1]["current_price"] == ""  # None is an empty cell
    assert lines[1]["unit_cost"] == ""  # known columns are always present
    header = path.read_text("utf-8").splitlines()[0]
    assert header.startswith("product_id,category,current_price,recommended_price")


def test_forecast_csv_has_one_line_per_period(tmp_path: Path) -> None:
    lines = read_csv(export_csv(forecast_batch(), tmp_path / "forecast.csv"))
    assert len(lines) == 3 + 2 + 3
    weekly = [line for line in lines if line["horizon"] == "weekly"]
    assert [line["period_start"] for line in weekly] == ["2024-05-01", "2024-05-02"]
    assert [float(line["predicted"]) for line in weekly] == [70.0, 75.0]
    assert [float(line["lower"]) for line in weekly] == [56.0, 60.0]
    assert [float(line["upper"]) for line in weekly] == [84.0, 90.0]
    assert {line["key"] for line in lines} == {"dairy", "P7"}
    assert weekly[0]["trend_direction"] == "up"
    assert weekly[0]["seasonality_saturday"] == "1.3"
    assert weekly[0]["period_days"] == "1"


def test_bundle_lists_and_withheld_trends_are_flattened(tmp_path: Path) -> None:
    [bundle] = read_csv(export_csv(bundles_batch(), tmp_path / "bundles.csv"))
    assert bundle["products"] == "P1;P2"
    assert bundle["individual_prices"] == "2.5;2.5"
    assert bundle["target_segments"] == "families;weekend"
    trends = read_csv(export_csv(trends_batch(), tmp_path / "trends.csv"))
    assert [(t["category"], t["week"], t["index"]) for t in trends] == [
        ("bakery", "2024-04-01", "100.0"),
        ("bakery", "2024-04-08", ""),
        ("bakery", "2024-04-15", "104.0"),
        ("tobacco", "", ""),
    ]
    assert trends[-1]["reason"] == "fewer than 5 shops contributed"


def test_json_export_keeps_metadata_and_rows(tmp_path: Path) -> None:
    one = json.loads(export_json(pricing_batch(), tmp_path / "one.json").read_text("utf-8"))
    assert one["kind"] == "pricing"
    assert one["node"] == "shop-1"
    assert one["model_version"] == "g-pricing"
    assert one["data_fingerprint"] == "d-feedbeef"
    assert one["epsilon_spent"] == 1.25
    assert one["created_at"] == "2024-05-01T09:00:00+00:00"
    assert one["rows"] == pricing_batch().rows
    assert one["meta"]["curves"][0]["prices"] == [1.6, 1.8, 2.0, 2.2, 2.4]
    many = json.loads(
        export_json([value_batch(), trends_batch()], tmp_path / "many.json").read_text("utf-8")
    )
    assert [b["kind"] for b in many] == ["value", "trends"]


def test_export_file_picks_the_format_by_suffix(tmp_path: Path) -> None:
    assert read_csv(export_file(value_batch(), tmp_path / "v.CSV"))[0]["node"] == "shop-1"
    assert json.loads(export_file([value_batch()], tmp_path / "v.json").read_text("utf-8"))
    with pytest.raises(ExportError, match=r"name the file \.csv or \.json"):
        export_file(value_batch(), tmp_path / "v.xlsx")
    with pytest.raises(ExportError, match="a CSV file holds one batch"):
        export_file([value_batch(), value_batch()], tmp_path / "two.csv")
    assert not (tmp_path / "v.xlsx").exists()


class Exploding:
    def __str__(self) -> str:
        raise RuntimeError("disk full, say")


def test_a_failed_export_leaves_no_half_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "pricing.csv"
    target.parent.mkdir()
    target.write_text("the previous export\n", "utf-8")
    broken = batch("pricing", [{"product_id": "P1"}] * 50 + [{"product_id": Exploding()}])
    with pytest.raises(RuntimeError, match="disk full"):
        export_csv(broken, target)
    assert target.read_text("utf-8") == "the previous export\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["pricing.csv"]
    with pytest.raises(TypeError):
        export_json(broken, tmp_path / "out" / "new.json")
    assert sorted(p.name for p in target.parent.iterdir()) == ["pricing.csv"]


# -- HTML -------------------------------------------------------------------------------------


@pytest.fixture
def report() -> str:
    return render_report(all_batches(), title=f"Shop {HOSTILE}", generated_at=GENERATED)


def test_report_is_self_contained(report: str) -> None:
    tags = parse(report)
    for tag, attrs in tags.tags:
        assert tag not in {"script", "iframe", "object", "embed", "link", "img", "base"}
        for name in ("src", "href", "action", "xlink:href"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:|//|javascript:)", value, re.I), (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    assert "http://" not in report
    assert "https://" not in report
    assert "url(" not in report
    assert "@import" not in report
    csp = [a for t, a in tags.tags if t == "meta" and a.get("http-equiv")]
    assert csp and "default-src 'none'" in (csp[0].get("content") or "")


def test_report_escapes_hostile_text(report: str) -> None:
    assert HOSTILE not in report
    assert "<script" not in report.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    text = "".join(parse(report).text)
    assert HOSTILE in text  # shown to the reader as text, in the table, title and chart


def test_report_has_every_section_with_its_provenance(report: str) -> None:
    tags = parse(report)
    ids = [a.get("id") for t, a in tags.tags if t == "section"]
    assert ids == list(KINDS)
    for kind in KINDS:
        assert f"model g-{kind}" in report
    assert "Batch #1, computed 2024-05-01 09:00 UTC" in report
    assert "Generated 2024-05-02 08:30 UTC" in report
    assert "d-feedbeef" in report
    assert "1.25" in report
    # pricing: table and curves (units and revenue charts for the one curve)
    assert "2.20 (2.10 to 2.30)" in report
    assert report.count("expected units</title>") == 1
    # forecast: one chart per category horizon, each with its interval band
    assert "dairy: daily</title>" in report
    assert "dairy: weekly</title>" in report
    assert report.count('class="band"') >= 2 + 2  # units, revenue, daily, weekly
    assert "80% interval" in report
    assert "<td>P7</td>" in report
    # bundles
    assert "<td>P1, P2</td>" in report
    assert "10.0%" in report
    # trends: a line, the withheld category with its reason
    assert "Market index by week</title>" in report
    assert "<td>tobacco</td><td>fewer than 5 shops contributed</td>" in report
    # value: the message and the bar chart
    assert "Forecasts are 23% closer with the federation" in report
    assert "WAPE, lower is better" in report
    assert report.count("<svg") == 2 + 2 + 1 + 1


def test_sections_without_data_say_so() -> None:
    html = render_report({"value": value_batch()}, title="Only value", generated_at=GENERATED)
    for kind in ("pricing", "forecast", "bundles", "trends"):
        assert f"No {kind} insights yet." in html
    assert "No value insights yet." not in html
    empty = batch("bundles", [], {"reason": "no market statistics yet: join a campaign first"})
    html = render_report({"bundles": empty}, title="Empty", generated_at=GENERATED)
    assert "produced no bundles rows. no market statistics yet" in html
    blank = render_report({}, title="Nothing", generated_at=GENERATED)
    assert blank.count("insights yet.") == len(KINDS)


def test_rows_missing_optional_keys_still_render() -> None:
    sparse = {
        "pricing": batch("pricing", [{"product_id": "P1"}], {"curves": [{"product_id": "P1"}]}),
        "forecast": batch("forecast", [{"scope": "category", "key": "x"}]),
        "bundles": batch("bundles", [{"bundle_id": "B"}]),
        "trends": batch("trends", [{"category": "c", "weeks": ["2024-01-01"], "index": [None]}]),
        "value": batch("value", [{"node": "n", "local_wape": "oops"}]),
    }
    html = render_report(sparse, title="Sparse", generated_at=GENERATED)
    assert "no data to chart" in html
    assert html.count("<section") == len(KINDS)


def test_render_refuses_a_batch_under_the_wrong_kind() -> None:
    with pytest.raises(ValueError, match="was given a value batch"):
        render_report({"pricing": value_batch()}, title="x")


@pytest.fixture
def filled_store(tmp_path: Path) -> Iterator[InsightStore]:
    with InsightStore.in_data_dir(tmp_path / "node") as store:
        for kind, stored in all_batches().items():
            store.save(
                kind,
                stored.rows,
                node="shop-1",
                model_version="g-1",
                data_fingerprint="d-1",
                epsilon_spent=0.5,
                meta=stored.meta,
            )
        yield store


def test_write_report_uses_the_latest_batches(filled_store: InsightStore, tmp_path: Path) -> None:
    filled_store.save(
        "bundles",
        [{"bundle_id": "NEWEST", "products": ["P9"]}],
        node="shop-1",
        model_version="g-2",
        data_fingerprint="d-2",
        epsilon_spent=0.75,
    )
    path = write_report(filled_store, tmp_path / "out" / "report.html", generated_at=GENERATED)
    html = path.read_text("utf-8")
    assert "<title>Insights for shop-1</title>" in html
    assert "NEWEST" in html
    assert "<td>B1</td>" not in html
    assert "g-1, g-2" in html  # the header names every model version shown
    assert "0.75" in html  # the newest ε spent


# -- charts -----------------------------------------------------------------------------------


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert svg_charts.nice_ticks(0, 10) == [0, 2.5, 5, 7.5, 10]
    assert svg_charts.nice_ticks(0.13, 0.31) == pytest.approx([0.15, 0.2, 0.25, 0.3])
    assert svg_charts.nice_ticks(5, 5) == [5]
    assert svg_charts.nice_ticks(float("nan"), 1) == []


def test_line_chart_breaks_at_missing_values() -> None:
    svg = svg_charts.line_chart([svg_charts.Series("s", [1.0, 2.0, None, 3.0, 4.0])], title="gaps")
    assert svg.count("<polyline") == 2
    lonely = svg_charts.line_chart([svg_charts.Series("s", [None, 2.0, None])], title="dot")
    assert "<circle" in lonely
    flat = svg_charts.line_chart([svg_charts.Series("s", [3.0, 3.0])], title="flat")
    assert "<polyline" in flat
    assert "no data to chart" in svg_charts.line_chart([], title="nothing")


def test_a_very_wide_band_does_not_flatten_its_line() -> None:
    wide = svg_charts.Series("units", [10.0, 11.0, 12.0], low=[9.0, 0.0, 0.0], high=[11, 5e4, 9e4])
    svg = svg_charts.line_chart([wide], title="wide", y_from_zero=True)
    assert "shaded range cut at the chart's edge" in svg
    labels = [float(t) for t in re.findall(r'text-anchor="end"[^>]*>([0-9.]+)</text>', svg)]
    assert labels and max(labels) <= 40  # the axis follows the line (10-12), not the band
    narrow = svg_charts.Series("units", [10.0, 12.0], low=[8.0, 9.0], high=[12.0, 15.0])
    assert "cut at the chart" not in svg_charts.line_chart([narrow], title="narrow")
