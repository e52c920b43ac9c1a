"""Insights view-models: reading the store offline, history, tables, curves, series, refresh."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop_client.viewmodels import insights_forecast as forecast_vm
from desktop_client.viewmodels import insights_market as market_vm
from desktop_client.viewmodels import insights_pricing as pricing_vm
from desktop_client.viewmodels.insights import InsightsViewModel
from desktop_client.viewmodels.insights_refresh import refresh_command, refresh_outcome
from desktop_client.viewmodels.insights_tables import Cell, Table, sorted_rows
from shared.insights.store import INSIGHTS_FILENAME, KINDS, InsightStore, StoredBatch
from tests.desktop_client.insight_snapshot import load_batches, populate


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    populate(root)
    return root


def test_without_a_store_every_kind_says_what_to_do_and_no_file_is_created(tmp_path: Path) -> None:
    vm = InsightsViewModel(tmp_path)
    for kind, state in vm.states().items():
        assert state.batch is None and state.provenance is None
        assert state.message.startswith("No ") and "join a training round" in state.message
        assert vm.history(kind) == []
    assert not vm.has_insights()
    assert not (tmp_path / INSIGHTS_FILENAME).exists()


def test_every_kind_shows_rows_with_its_model_version_and_date(node: Path) -> None:
    vm = InsightsViewModel(node)
    recorded = {b["kind"]: b for b in load_batches()}  # the newest of each kind wins
    for kind in KINDS:
        state = vm.state(kind)
        assert state.has_rows, kind
        assert state.message == ""
        text = state.provenance.text() if state.provenance else ""
        assert recorded[kind]["model_version"] in text
        assert recorded[kind]["created_at"][:10] in text


def test_history_lists_earlier_pricing_and_shows_the_chosen_batch(node: Path) -> None:
    vm = InsightsViewModel(node)
    history = vm.history("pricing")
    assert len(history) == 2 and history[0].batch_id > history[1].batch_id
    newest, earlier = vm.state("pricing"), vm.state("pricing", history[1].batch_id)
    assert newest.batch is not None and earlier.batch is not None
    assert earlier.batch.model_version == "local-only" != newest.batch.model_version
    assert history[1].model_version in history[1].label()
    wrong_kind = vm.state("forecast", history[1].batch_id)
    assert wrong_kind.batch is None and "different" in wrong_kind.message


def test_an_unreadable_store_is_named_in_the_message(tmp_path: Path) -> None:
    (tmp_path / INSIGHTS_FILENAME).write_bytes(b"this is not a database" * 100)
    state = InsightsViewModel(tmp_path).state("pricing")
    assert state.batch is None
    assert str(tmp_path / INSIGHTS_FILENAME) in state.message


def test_a_computation_without_rows_gives_the_engines_reason(tmp_path: Path) -> None:
    with InsightStore.in_data_dir(tmp_path) as store:
        store.save(
            "bundles",
            [],
            node="shop",
            model_version="g-1",
            data_fingerprint="d",
            epsilon_spent=0.0,
            meta={"reason": "no market statistics yet: join a campaign first"},
        )
    state = InsightsViewModel(tmp_path).state("bundles")
    assert state.batch is not None and not state.has_rows
    assert "no market statistics yet" in state.message


# -- pricing ----------------------------------------------------------------------------------


def _state_batch(node: Path, kind: str) -> StoredBatch:
    batch = InsightsViewModel(node).state(kind).batch
    assert batch is not None
    return batch


def test_pricing_table_has_one_row_per_product_with_intervals(node: Path) -> None:
    batch = _state_batch(node, "pricing")
    table = pricing_vm.pricing_table(batch)
    assert list(table.ids) == [r["product_id"] for r in batch.rows]
    recommended = table.column("Recommended price (range)")
    first = batch.rows[0]
    assert recommended[0].startswith(f"{first['recommended_price']:,.2f} (")
    assert f"{first['recommended_low']:,.2f} to {first['recommended_high']:,.2f}" in recommended[0]
    assert all(p != "—" for p in table.column("Market position"))


def test_stored_curves_are_rebuilt_exactly_from_their_rows(node: Path) -> None:
    """Constant elasticity: units(p) = units(p_rec) * (p / p_rec) ** e, so the curve rebuilt
    from a stored row equals the engine's own curve for every product whose curve the engine
    stored; its band (the curve at the stored elasticity interval's ends) matches the engine's
    per-price quantiles up to one draw's rank (a few percent at the ends of the grid)."""
    for batch in (b for b in InsightsViewModel(node).history("pricing")):
        full = _batch_by_id(node, batch.batch_id)
        curves = full.meta["curves"]
        assert curves
        for stored in curves:
            row = next(r for r in full.rows if r["product_id"] == stored["product_id"])
            rebuilt = pricing_vm.derive_curve(row)
            assert rebuilt is not None and not rebuilt.stored
            for name in ("prices", "units", "revenue"):
                assert getattr(rebuilt, name) == pytest.approx(stored[name], rel=1e-6), name
            for name in ("units_low", "units_high", "revenue_low", "revenue_high"):
                assert getattr(rebuilt, name) == pytest.approx(stored[name], rel=0.03), name
            if stored["margin"] is None:
                assert rebuilt.margin is None
            else:
                assert rebuilt.margin == pytest.approx(stored["margin"], rel=1e-6, abs=1e-6)


def _batch_by_id(node: Path, batch_id: int) -> StoredBatch:
    with InsightStore.in_data_dir(node, create=False) as store:
        found = store.get(batch_id)
    assert found is not None
    return found


def test_curve_for_prefers_the_stored_curve_and_rebuilds_the_others(node: Path) -> None:
    batch = _state_batch(node, "pricing")
    stored_ids = {c["product_id"] for c in batch.meta["curves"]}
    for product in pricing_vm.product_ids(batch):
        curve = pricing_vm.curve_for(batch, product)
        assert curve is not None and curve.stored == (product in stored_ids)
    assert pricing_vm.curve_for(batch, "no such product") is None


@settings(max_examples=150, deadline=None)
@given(
    current=st.floats(0.5, 50),
    ratio=st.floats(0.7, 1.4),
    elasticity=st.floats(-4.0, -0.1),
    spread=st.floats(0.0, 1.0),
    units=st.floats(0.0, 500.0),
    cost_share=st.one_of(st.none(), st.floats(0.1, 0.9)),
)
def test_rebuilt_curve_passes_through_the_recommendation_inside_its_band(
    current: float,
    ratio: float,
    elasticity: float,
    spread: float,
    units: float,
    cost_share: float | None,
) -> None:
    """Design property (pricing what-if): the curve's units at the recommended price are the
    stored expected units, the band holds the point curve, revenue = price x units, and the
    margin curve exists exactly when the unit cost is known."""
    recommended = current * ratio
    row: dict[str, Any] = {
        "product_id": "P",
        "current_price": current,
        "recommended_price": recommended,
        "price_min": min(current, recommended) * 0.9,
        "price_max": max(current, recommended) * 1.1,
        "elasticity": elasticity,
        "elasticity_low": elasticity - spread,
        "elasticity_high": min(elasticity + spread, 0.0),
        "expected_units": units,
        "unit_cost": None if cost_share is None else current * cost_share,
    }
    curve = pricing_vm.derive_curve(row)
    assert curve is not None
    at_rec = units * (curve.prices[0] / recommended) ** elasticity
    assert curve.units[0] == pytest.approx(at_rec, rel=1e-9, abs=1e-9)
    for p, u, lo, hi, rev in zip(
        curve.prices, curve.units, curve.units_low, curve.units_high, curve.revenue, strict=True
    ):
        assert u is not None and lo is not None and hi is not None and rev is not None
        assert lo <= u * (1 + 1e-9) + 1e-9 and u <= hi * (1 + 1e-9) + 1e-9
        assert rev == pytest.approx(p * u)
    assert (curve.margin is None) == (cost_share is None)
    assert (
        curve.prices[0] < min(current, recommended) <= max(current, recommended) < curve.prices[-1]
    )


def test_a_row_without_the_numbers_gives_no_curve() -> None:
    assert pricing_vm.derive_curve({"product_id": "P", "current_price": 2.0}) is None
    assert (
        pricing_vm.derive_curve(
            {
                "current_price": 0.0,
                "recommended_price": 1.0,
                "elasticity": -1.0,
                "expected_units": 3.0,
            }
        )
        is None
    )


# -- sorting ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), max_size=40),
    descending=st.booleans(),
)
def test_sorting_orders_known_values_and_keeps_unknown_last(
    keys: list[float | None], descending: bool
) -> None:
    """Table sorting property: a permutation of the rows, known values in order, unknown
    values (missing numbers) always at the bottom, whichever direction."""
    table = Table(("x",), tuple((Cell(str(k), k, True),) for k in keys))
    order = sorted_rows(table, 0, descending)
    assert sorted(order) == list(range(len(keys)))
    known = [keys[i] for i in order if keys[i] is not None]
    assert known == sorted(known, reverse=descending)  # type: ignore[type-var]
    first_unknown = next((n for n, i in enumerate(order) if keys[i] is None), len(order))
    assert all(keys[i] is None for i in order[first_unknown:])


def test_table_model_keeps_the_engine_order_until_asked_and_the_chosen_sort_after(
    qapp: object,
) -> None:
    from PySide6.QtCore import Qt

    from desktop_client.viewmodels.insights_qtmodel import ROW_ID_ROLE, TableModel

    def table(keys: list[float | None]) -> Table:
        ids = tuple(f"r{i}" for i in range(len(keys)))
        return Table(("x",), tuple((Cell(str(k), k, True),) for k in keys), ids)

    model = TableModel(table([2.0, None, 1.0, 3.0]))
    assert [model.row_id(r) for r in range(4)] == ["r0", "r1", "r2", "r3"]
    model.sort(0, Qt.SortOrder.DescendingOrder)
    assert [model.index(r, 0).data() for r in range(4)] == ["3.0", "2.0", "1.0", "None"]
    assert model.index(0, 0).data(ROW_ID_ROLE) == "r3" and model.row_of("r1") == 3
    model.set_table(table([5.0, 7.0]))  # a refresh keeps the person's chosen order
    assert [model.index(r, 0).data() for r in range(2)] == ["7.0", "5.0"]
    model.sort(-1)
    assert [model.index(r, 0).data() for r in range(2)] == ["5.0", "7.0"]


# -- forecasts, bundles, trends, value --------------------------------------------------------


def test_forecast_choices_horizons_and_bands(node: Path) -> None:
    batch = _state_batch(node, "forecast")
    choices = forecast_vm.choices(batch)
    scopes = [c.scope for c in choices]
    assert scopes == sorted(scopes, key=lambda s: s != "category") and "product" in scopes
    assert len(choices) == len({(r["scope"], r["key"]) for r in batch.rows})
    for choice in choices[:5]:
        assert forecast_vm.horizons(batch, choice) == ["daily", "weekly", "monthly"]
        for horizon in ("daily", "weekly", "monthly"):
            series = forecast_vm.series(batch, choice, horizon)
            assert series is not None and len(series.period_starts) == len(series.predicted)
            for lo, p, hi in zip(series.lower, series.predicted, series.upper, strict=True):
                assert lo is not None and p is not None and hi is not None and lo <= p <= hi
            assert "80% interval" in series.caption()
    assert forecast_vm.series(batch, choices[0], "yearly") is None


def test_bundles_table_shows_items_discount_evidence_segments_and_peak_month(node: Path) -> None:
    batch = _state_batch(node, "bundles")
    table = market_vm.bundles_table(batch)
    assert len(table.rows) == len(batch.rows) > 0
    first = batch.rows[0]
    assert table.column("Products")[0] == " + ".join(first["products"])
    assert table.column("Discount")[0] == f"{first['discount_pct']:.1f}%"
    assert table.column("Evidence")[0] == f"{first['confidence']:,.2f}"
    months = [market_vm.peak_month(r) for r in batch.rows]
    assert table.column("Peak month") == [m or "—" for m in months]
    assert market_vm.peak_month({"context": "bought together most in March (1.4x)"}) == "March"
    assert market_vm.peak_month({"context": None}) is None


def test_trends_split_published_from_withheld_with_reasons(node: Path) -> None:
    batch = _state_batch(node, "trends")
    published = market_vm.trend_series(batch)
    withheld = market_vm.withheld(batch)
    assert len(published) + len(withheld) == len(batch.rows)
    assert published and all(len(t.market) == len(t.weeks) for t in published)
    assert all(w.reason for w in withheld)
    for trend in published:
        assert trend.has_own == any(v is not None for v in trend.own)
        assert ("no sales in this category" in trend.caption()) != trend.has_own
    assert [r[0].text for r in market_vm.withheld_table(batch).rows] == [
        w.category for w in withheld
    ]


def test_value_has_the_plain_sentence_and_both_errors(node: Path) -> None:
    (value,) = market_vm.collaboration_values(_state_batch(node, "value"))
    assert value.sentence.startswith("Forecasts are")
    labels = [label for label, _ in value.bars()]
    assert labels == ["Your data alone", "With the federation"]
    assert all(v is not None and v >= 0 for _, v in value.bars())


# -- refresh (owner mode) ---------------------------------------------------------------------


def test_refresh_runs_retail_node_insights_refresh_for_this_node(tmp_path: Path) -> None:
    command = refresh_command(tmp_path, python="/usr/bin/python3")
    assert command.program == "/usr/bin/python3"
    assert command.arguments == (
        "-m",
        "desktop_client.node_cli",
        "insights",
        "refresh",
        "--data-dir",
        str(tmp_path),
        "--json",
    )


def test_refresh_outcomes_are_plain_words_and_never_a_traceback() -> None:
    ok = refresh_outcome(0, json.dumps({"data_dir": "/x", "batches": [{}, {}, {}, {}, {}]}))
    assert ok.ok and "5 kinds" in ok.message
    failed = refresh_outcome(1, json.dumps({"ok": False, "error": "no global model yet"}))
    assert not failed.ok and failed.message.endswith("no global model yet")
    crashed = refresh_outcome(1, "Traceback (most recent call last):\n  File ...")
    assert not crashed.ok and "Traceback" not in crashed.message and "code 1" in crashed.message
