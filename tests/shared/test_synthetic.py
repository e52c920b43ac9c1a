"""Synthetic retailers: deterministic, skewed, one dialect each, and faithful to ground truth."""

from __future__ import annotations

import csv
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.schema import CORE_FIELDS, DEFAULT_MINIMUMS, FIELD_NAMES, Task
from shared.synthetic import (
    DIALECTS,
    DIALECTS_BY_NAME,
    EXCEL_SERIAL,
    DemoManifest,
    generate_demo,
    read_export,
)
from shared.synthetic.labels import CATEGORY_LABELS, LABEL_STYLES, _write
from shared.synthetic.profiles import build_profiles
from shared.synthetic.world import build_world
from shared.taxonomy import load_taxonomy

SEED = 20261031


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoManifest, dict[str, Any], float]:
    """Six retailers at full scale: one per dialect, the data most tests look at."""
    out = tmp_path_factory.mktemp("demo")
    started = time.perf_counter()
    manifest = generate_demo(out, 6, SEED)
    elapsed = time.perf_counter() - started
    truth = json.loads(manifest.ground_truth_path.read_text("utf-8"))
    return manifest, truth, elapsed


@pytest.fixture(scope="module")
def frames(demo: tuple[DemoManifest, dict[str, Any], float]) -> dict[str, pd.DataFrame]:
    manifest, _, _ = demo
    return {
        e.retailer_id: read_export(e.path, DIALECTS_BY_NAME[e.dialect]) for e in manifest.retailers
    }


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_writes_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = generate_demo(tmp_path / "a", 6, 7, scale=0.1)
    second = generate_demo(tmp_path / "b", 6, 7, scale=0.1)
    other = generate_demo(tmp_path / "c", 1, 8, scale=0.1)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(files_a) == 7  # six exports (including .xlsx and .parquet) + ground truth
    assert files_a == files_b
    assert [e.rows for e in first.retailers] == [e.rows for e in second.retailers]
    assert _files(tmp_path / "c")["ground_truth.json"] != files_a["ground_truth.json"]
    assert other.retailers[0].total_revenue != first.retailers[0].total_revenue


def test_generation_is_fast_and_modest(demo: tuple[DemoManifest, dict[str, Any], float]) -> None:
    manifest, _, elapsed = demo
    assert elapsed < 20.0  # about 2-3 s on a laptop; generous so slow CI machines pass
    assert manifest.total_rows < 300_000


def test_each_retailer_gets_a_different_dialect_and_dialects_cycle(
    demo: tuple[DemoManifest, dict[str, Any], float],
) -> None:
    manifest, _, _ = demo
    assert sorted(e.dialect for e in manifest.retailers) == sorted(d.name for d in DIALECTS)
    taxonomy = load_taxonomy()
    rng = np.random.default_rng(1)
    world = build_world(taxonomy, rng)
    profiles = build_profiles(world, 8, 1.0, taxonomy, rng)
    names = [p.dialect.name for p in profiles]
    assert names[: len(DIALECTS)] == [d.name for d in DIALECTS]
    assert names[len(DIALECTS) :] == [d.name for d in DIALECTS[:2]]


def test_sizes_are_skewed(demo: tuple[DemoManifest, dict[str, Any], float]) -> None:
    manifest, _, _ = demo
    rows = [e.rows for e in manifest.retailers]
    sizes = [e.size for e in manifest.retailers]
    assert max(rows) >= 3 * min(rows)
    assert 7.0 <= max(sizes) / min(sizes) <= 13.0
    # many small, few large: the median retailer is much closer to the smallest than the largest
    assert np.median(sizes) < (min(sizes) + max(sizes)) / 2
    products = [e.products for e in manifest.retailers]
    assert min(products) >= 10 and max(products) <= 200


def test_every_retailer_meets_the_minimum_dataset(
    demo: tuple[DemoManifest, dict[str, Any], float], frames: dict[str, pd.DataFrame]
) -> None:
    manifest, _, _ = demo
    need_rows = max(m.rows for m in DEFAULT_MINIMUMS.values())
    need_days = max(m.days_of_history for m in DEFAULT_MINIMUMS.values())
    need_products = DEFAULT_MINIMUMS[Task.BUNDLES].products
    need_baskets = DEFAULT_MINIMUMS[Task.BUNDLES].baskets
    for entry in manifest.retailers:
        frame = frames[entry.retailer_id]
        span = (frame["timestamp"].max() - frame["timestamp"].min()).days
        assert entry.rows >= 1500, entry
        assert entry.rows >= need_rows and span >= need_days
        assert entry.products >= need_products
        assert entry.baskets >= need_baskets


@pytest.mark.parametrize("index", range(6))
def test_file_reads_back_to_ground_truth_totals(
    index: int,
    demo: tuple[DemoManifest, dict[str, Any], float],
    frames: dict[str, pd.DataFrame],
) -> None:
    manifest, truth, _ = demo
    entry = manifest.retailers[index]
    record = truth["retailers"][index]
    frame = frames[entry.retailer_id]
    assert record["retailer_id"] == entry.retailer_id
    assert (manifest.out_dir / record["file"]) == entry.path
    assert list(frame.columns) == record["exported_columns"]
    assert set(CORE_FIELDS) <= set(frame.columns)
    assert len(frame) == record["rows"] == entry.rows
    assert int(frame["quantity_sold"].sum()) == record["total_quantity"] == entry.total_quantity
    revenue = float((frame["price"] * frame["quantity_sold"]).sum())
    assert revenue == pytest.approx(record["total_revenue"], abs=0.005)
    assert frame["product_id"].nunique() == record["products"]
    assert frame["transaction_id"].nunique() == record["baskets"]
    assert frame["timestamp"].min().date().isoformat() == record["first_day"]
    assert frame["timestamp"].max().date().isoformat() == record["last_day"]
    assert set(frame["category"].dropna()) == set(record["category_labels"])
    assert frame["product_id"].notna().all() and frame["price"].gt(0).all()
    negative = (frame["quantity_sold"] < 0).mean()
    assert 0 < negative < 0.02  # a few returns, as in real till journals
    if "customer_id" in frame:
        assert 0.1 < frame["customer_id"].isna().mean() < 0.6  # anonymous walk-ins


def test_ground_truth_records_the_planted_world(
    demo: tuple[DemoManifest, dict[str, Any], float],
) -> None:
    manifest, truth, _ = demo
    taxonomy = load_taxonomy()
    assert truth["seed"] == SEED
    assert truth["generator_version"] == manifest.generator_version
    assert truth["taxonomy_version"] == taxonomy.version
    assert truth["date_range"] == {"start": "2025-11-01", "end": "2026-10-31", "days": 365}
    categories = truth["world"]["categories"]
    assert set(categories) == set(taxonomy.codes) - {taxonomy.fallback}
    for params in categories.values():
        assert -2.5 <= params["elasticity"] <= -0.5
        assert params["promo_lift"] >= 1.2
        assert params["promo_lift"] <= 1.8
        assert 0 < params["cross_price_elasticity"] < 1
        assert np.mean(list(params["weekly"].values())) == pytest.approx(1.0, abs=0.01)
        assert params["yearly"][0]["amplitude"] > 0
    pairs = truth["world"]["planted_pairs"]
    assert 3 <= len(pairs) <= 5
    planted = [code for pair in pairs for code in pair["categories"]]
    assert len(planted) == len(set(planted))
    for record in truth["retailers"]:
        assert 6 <= len(record["categories"]) <= 10
        assert record["stockout_days"] >= 0
        assert set(record["optional_columns"]) == set(record["exported_columns"]) - set(CORE_FIELDS)
    assert sum(r["stockout_days"] for r in truth["retailers"]) > 0


def test_labels_are_the_retailers_own_and_map_to_the_taxonomy(
    demo: tuple[DemoManifest, dict[str, Any], float],
) -> None:
    _, truth, _ = demo
    taxonomy = load_taxonomy()
    words_for: dict[str, set[str]] = {}
    for record in truth["retailers"]:
        labels = record["category_labels"]
        assert sorted(labels.values()) == sorted(record["categories"])
        for label, code in labels.items():
            assert taxonomy.match(label).code == code, (record["retailer_id"], label)
            words_for.setdefault(code, set()).add(label)
    all_labels = set().union(*words_for.values())
    assert len(all_labels & set(taxonomy.codes)) < len(all_labels) / 2  # own words, not codes
    assert any(len(words) > 1 for words in words_for.values())  # retailers disagree on words
    for code, languages in CATEGORY_LABELS.items():
        for label in itertools.chain.from_iterable(languages.values()):
            for _, case in LABEL_STYLES.values():
                assert taxonomy.match(_write(label, case)).code == code, label


def test_competitor_price_only_where_tracked(
    demo: tuple[DemoManifest, dict[str, Any], float], frames: dict[str, pd.DataFrame]
) -> None:
    _, truth, _ = demo
    tracked = [r["tracks_competitor_price"] for r in truth["retailers"]]
    assert any(tracked) and not all(tracked)
    for record in truth["retailers"]:
        present = "competitor_price" in frames[record["retailer_id"]].columns
        assert present == record["tracks_competitor_price"]


def _raw_text(path: Path, encoding: str) -> str:
    return path.read_bytes().decode(encoding)


def test_dialect_specifics_are_on_disk(demo: tuple[DemoManifest, dict[str, Any], float]) -> None:
    manifest, _, _ = demo
    by_dialect = {e.dialect: e for e in manifest.retailers}

    standard = _raw_text(by_dialect["standard_csv"].path, "utf-8").splitlines()
    assert standard[0].startswith("transaction_id,timestamp,")
    assert re.search(r",\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},", standard[1])

    eu_path = by_dialect["eu_semicolon"].path
    assert eu_path.read_bytes().startswith(b"\xef\xbb\xbf")
    eu = list(csv.DictReader(_raw_text(eu_path, "utf-8-sig").splitlines(), delimiter=";"))
    assert {"Artikelnummer", "Warengruppe", "Preis", "Menge", "Datum", "Aktion"} <= set(eu[0])
    assert all(re.fullmatch(r"\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}", row["Datum"]) for row in eu)
    assert all(re.fullmatch(r"-?[\d.]+,\d{2}", row["Preis"]) for row in eu)
    assert {row["Aktion"] for row in eu} == {"ja", "nein"}
    assert any(re.fullmatch(r"\d{1,3}(\.\d{3})+", row["Lagerbestand"]) for row in eu)

    us_path = by_dialect["us_pos_tsv"].path
    raw = us_path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    us = list(csv.DictReader(raw.decode("cp1252").splitlines(), delimiter="\t"))
    assert {"SKU", "Department", "Unit Price", "Qty", "Sale Date", "On Promo"} <= set(us[0])
    assert any(re.search(r"[^\x00-\x7f]", row["Description"]) for row in us)
    assert all(re.fullmatch(r"\d{2}/\d{2}/\d{4} \d{1,2}:\d{2} [AP]M", r["Sale Date"]) for r in us)
    assert {row["On Promo"] for row in us} == {"Y", "N"}
    assert all(row["SKU"].startswith("0") for row in us)  # leading zeros must survive import

    pipe_path = by_dialect["pipe_quoted_csv"].path
    pipe_lines = _raw_text(pipe_path, "latin-1").splitlines()
    assert all(line.startswith('"') and line.endswith('"') for line in pipe_lines)
    assert all(
        line.count('"|"') == pipe_lines[0].count('"|"') for line in pipe_lines
    )  # every field quoted
    pipe = list(csv.DictReader(pipe_lines, delimiter="|"))
    assert all(re.fullmatch(r"\d{2}/\d{2}/\d{4}", row["Transaction Date"]) for row in pipe)
    assert any(int(row["Transaction Date"][:2]) > 12 for row in pipe)  # day-first is detectable
    assert any("," in row["Selling Price"] for row in pipe)
    with pytest.raises(UnicodeDecodeError):
        pipe_path.read_bytes().decode("utf-8")

    xlsx = pd.read_excel(by_dialect["spreadsheet_xlsx"].path)
    assert DIALECTS_BY_NAME["spreadsheet_xlsx"].date_format == EXCEL_SERIAL
    assert xlsx["Date"].dtype.kind == "i" and xlsx["Date"].between(45_900, 46_400).all()
    assert {"Item", "Category", "Price", "Units Sold"} <= set(xlsx.columns)

    parquet = pd.read_parquet(by_dialect["parquet_export"].path)
    assert pd.api.types.is_datetime64_any_dtype(parquet["sold_at"])
    assert parquet["unit_price"].dtype == np.float64 and parquet["qty"].dtype == np.int64


def test_dialect_definitions_are_coherent() -> None:
    assert len({d.name for d in DIALECTS}) == len(DIALECTS) >= 6
    for dialect in DIALECTS:
        assert set(dialect.columns) <= set(FIELD_NAMES), dialect.name
        assert set(CORE_FIELDS) | {"category"} <= set(dialect.columns), dialect.name
        headers = list(dialect.columns.values()) + list(dialect.extra_columns)
        assert len(headers) == len(set(headers)), dialect.name
        assert dialect.true_text != dialect.false_text


def _co_occurrence(basket: np.ndarray, category: np.ndarray, n_categories: int) -> np.ndarray:
    present = np.zeros((int(basket.max()) + 1, n_categories), dtype=np.int64)
    present[basket, category] = 1
    return present.T @ present


def test_planted_pairs_co_occur_above_independence(
    demo: tuple[DemoManifest, dict[str, Any], float], frames: dict[str, pd.DataFrame]
) -> None:
    """Baskets hold planted pairs far more often than when lines are shuffled between baskets.

    Shuffling categories across lines keeps every basket's size and every category's frequency,
    so it is the independence baseline; a plain lift is not, because one-line baskets can never
    hold two categories.
    """
    _, truth, _ = demo
    planted = {frozenset(p["categories"]) for p in truth["world"]["planted_pairs"]}
    rng = np.random.default_rng(0)
    ours: list[float] = []
    others: list[float] = []
    for record in truth["retailers"]:
        frame = frames[record["retailer_id"]]
        sales = frame[frame["quantity_sold"] > 0]
        codes = sales["category"].map(record["category_labels"]).to_numpy()
        categories = sorted(set(codes))
        category = np.searchsorted(categories, codes)
        basket = pd.factorize(sales["transaction_id"])[0]
        observed = _co_occurrence(basket, category, len(categories))
        null = np.stack(
            [_co_occurrence(basket, rng.permutation(category), len(categories)) for _ in range(30)]
        )
        z = (observed - null.mean(axis=0)) / np.maximum(null.std(axis=0), 1.0)
        carried = 0
        for i, j in itertools.combinations(range(len(categories)), 2):
            if frozenset((categories[i], categories[j])) in planted:
                ours.append(float(z[i, j]))
                carried += 1
            else:
                others.append(float(z[i, j]))
        assert carried, record["retailer_id"]  # every retailer carries a planted pair
    assert len(ours) >= 6
    assert min(ours) > 10, ours
    assert min(ours) > max(others), (sorted(ours), sorted(others)[-5:])


def test_price_elasticity_sign_is_recoverable(
    demo: tuple[DemoManifest, dict[str, Any], float], frames: dict[str, pd.DataFrame]
) -> None:
    """Within-product log-log regression of daily quantity on price, per category.

    Only days with sales are visible in a sales export, which flattens the slope towards zero
    for slow sellers; its sign still shows, clearly so for the big categories.
    """
    manifest, truth, _ = demo
    largest = max(manifest.retailers, key=lambda e: e.rows)
    record = next(r for r in truth["retailers"] if r["retailer_id"] == largest.retailer_id)
    frame = frames[largest.retailer_id]
    sales = frame[frame["quantity_sold"] > 0].assign(day=lambda f: f["timestamp"].dt.floor("D"))
    daily = (
        sales.groupby(["product_id", "day"])
        .agg(
            quantity=("quantity_sold", "sum"),
            price=("price", "median"),
            label=("category", "first"),
        )
        .reset_index()
    )
    daily["log_q"] = np.log(daily["quantity"])
    daily["log_p"] = np.log(daily["price"])
    for column in ("log_q", "log_p"):
        daily[column] -= daily.groupby("product_id")[column].transform("mean")
    slopes: dict[str, tuple[int, float]] = {}
    for label, group in daily.groupby("label"):
        if len(group) >= 300 and group["log_p"].std() > 0.01:
            slope = float(np.polyfit(group["log_p"], group["log_q"], 1)[0])
            slopes[record["category_labels"][label]] = (len(group), slope)
    assert len(slopes) >= 5
    assert all(slope < 0 for n, slope in slopes.values() if n >= 2000), slopes
    assert sum(slope < 0 for _, slope in slopes.values()) >= 0.75 * len(slopes), slopes
    pooled = float(np.polyfit(daily["log_p"], daily["log_q"], 1)[0])
    assert pooled < -0.2


def test_rejects_nonsense_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retailers"):
        generate_demo(tmp_path, 0, 1)
    with pytest.raises(ValueError, match="scale"):
        generate_demo(tmp_path, 1, 1, scale=0.0)
