"""The insight store: append-only history, round trips, comparisons, and light imports."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.insights.store import (
    INSIGHTS_FILENAME,
    KINDS,
    InsightStore,
    InsightStoreError,
    NoInsightsError,
    StoredBatch,
    compare_rows,
)

META: dict[str, Any] = {
    "node": "shop-1",
    "model_version": "g-0123456789ab",
    "data_fingerprint": "d-ba9876543210",
    "epsilon_spent": 1.5,
}


def ticking_clock(start: datetime) -> Callable[[], datetime]:
    """A clock that moves one minute per call, so stored times are predictable."""
    moments: Iterator[datetime] = (start + timedelta(minutes=i) for i in range(10_000))
    return lambda: next(moments)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InsightStore]:
    clock = ticking_clock(datetime(2024, 5, 1, 9, 0, tzinfo=UTC))
    with InsightStore(tmp_path / "node" / INSIGHTS_FILENAME, clock=clock) as opened:
        yield opened


def price_row(product_id: str, recommended: float, **extra: Any) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "category": "bakery",
        "current_price": 2.0,
        "recommended_price": recommended,
        "objective": "margin",
        **extra,
    }


def test_save_then_read_back_everything(store: InsightStore) -> None:
    rows = [price_row("P1", 2.2, elasticity=-1.3), price_row("P2", 3.1, note="ünïcödé")]
    saved = store.save("pricing", rows, meta={"curves": [{"product_id": "P1"}]}, **META)
    assert saved.id >= 1
    assert saved.kind == "pricing"
    assert saved.node == "shop-1"
    assert saved.model_version == "g-0123456789ab"
    assert saved.data_fingerprint == "d-ba9876543210"
    assert saved.epsilon_spent == 1.5
    assert saved.created_at == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    assert saved.rows == rows
    assert saved.row_count == 2
    assert saved.meta == {"curves": [{"product_id": "P1"}]}
    assert store.get(saved.id) == saved
    assert store.latest("pricing") == saved
    assert store.latest("forecast") is None


def test_reopening_the_file_keeps_the_batches(tmp_path: Path) -> None:
    with InsightStore.in_data_dir(tmp_path) as first:
        saved = first.save("value", [{"node": "shop-1", "local_wape": 0.3}], **META)
    assert (tmp_path / INSIGHTS_FILENAME).exists()
    with InsightStore.in_data_dir(tmp_path, create=False) as second:
        assert second.get(saved.id) == saved


def test_numpy_values_nan_and_tuples_become_plain_json(store: InsightStore) -> None:
    row = {
        "key": "bakery",
        "scope": "category",
        "horizon": "weekly",
        "predicted": np.array([1.5, np.nan]),
        "period_days": (7, 7),
        "interval_level": np.float64(0.8),
        "count": np.int64(3),
        "flag": np.bool_(True),
        "upper": float("inf"),
    }
    saved = store.save("forecast", [row], **{**META, "epsilon_spent": np.float64(0.25)})
    expected = {
        "key": "bakery",
        "scope": "category",
        "horizon": "weekly",
        "predicted": [1.5, None],
        "period_days": [7, 7],
        "interval_level": 0.8,
        "count": 3,
        "flag": True,
        "upper": None,
    }
    assert saved.rows == [expected]
    assert saved.epsilon_spent == 0.25
    loaded = store.latest("forecast")
    assert loaded is not None
    assert loaded.rows == [expected]
    assert type(loaded.rows[0]["count"]) is int


def test_history_is_newest_first_and_append_only(store: InsightStore) -> None:
    first = store.save("pricing", [price_row("P1", 2.2)], **META)
    other = store.save("forecast", [], **META)
    second = store.save("pricing", [price_row("P1", 2.4)], **{**META, "model_version": "g-2"})
    third = store.save("pricing", [price_row("P1", 2.5), price_row("P2", 1.0)], **META)

    history = store.history("pricing")
    assert [b.id for b in history] == [third.id, second.id, first.id]
    assert [b.created_at for b in history] == sorted((b.created_at for b in history), reverse=True)
    assert [b.row_count for b in history] == [2, 1, 1]
    assert all(b.rows == [] and b.meta == {} for b in history)  # summaries only
    assert [b.id for b in store.history("pricing", limit=2)] == [third.id, second.id]
    with_rows = store.history("pricing", limit=1, with_rows=True)
    assert with_rows == [third]
    # Saving again never replaced the earlier batch.
    assert store.get(first.id) == first
    assert store.latest("pricing") == third
    assert store.history("forecast") == [
        StoredBatch(
            id=other.id,
            kind="forecast",
            node=other.node,
            created_at=other.created_at,
            model_version=other.model_version,
            data_fingerprint=other.data_fingerprint,
            epsilon_spent=other.epsilon_spent,
            row_count=0,
        )
    ]
    assert store.count() == 4
    assert store.count("pricing") == 3


def test_the_file_refuses_updates_and_deletes(store: InsightStore) -> None:
    saved = store.save("trends", [{"category": "bakery", "status": "published"}], **META)
    connection = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("UPDATE batches SET node = 'someone else'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("DELETE FROM batches")
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()
    assert store.get(saved.id) == saved


@pytest.mark.parametrize(
    ("kind", "rows", "overrides", "message"),
    [
        ("prices", [], {}, "unknown insight kind 'prices'"),
        ("pricing", ["not a row"], {}, "pricing row 0: expected a mapping"),
        ("pricing", [{"product_id": object()}], {}, r"pricing row 0\.product_id: object"),
        ("pricing", [], {"epsilon_spent": -1.0}, "epsilon_spent must be a finite number"),
        ("pricing", [], {"epsilon_spent": float("nan")}, "epsilon_spent must be a finite number"),
        ("pricing", [], {"node": " "}, "node must not be empty"),
        ("pricing", [], {"model_version": None}, "model_version must be text"),
    ],
)
def test_save_rejects_bad_input_with_a_clear_message(
    store: InsightStore,
    kind: str,
    rows: list[Any],
    overrides: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(InsightStoreError, match=message):
        store.save(kind, rows, **{**META, **overrides})
    assert store.count() == 0


def test_unknown_kind_is_rejected_when_reading(store: InsightStore) -> None:
    with pytest.raises(InsightStoreError, match="use one of pricing, forecast"):
        store.latest("price")
    with pytest.raises(InsightStoreError, match="at least 1"):
        store.history("pricing", limit=0)
    assert store.get(12345) is None


def test_opening_without_create_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(NoInsightsError):
        InsightStore.in_data_dir(tmp_path / "node", create=False)
    assert not (tmp_path / "node").exists()


def test_a_file_that_is_not_a_store_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / INSIGHTS_FILENAME
    bogus.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(InsightStoreError, match="is not a readable insight store"):
        InsightStore(bogus)


def test_compare_pairs_pricing_rows_by_product(store: InsightStore) -> None:
    older = store.save(
        "pricing",
        [price_row("P1", 2.2), price_row("P2", 3.0), price_row("GONE", 1.0)],
        **META,
    )
    newer = store.save(
        "pricing",
        [price_row("P2", 3.0), price_row("P1", 2.5, note="more data"), price_row("NEW", 4.0)],
        **META,
    )
    changes = store.compare("pricing", older.id, newer.id)
    by_product = {c["key"]["product_id"]: c for c in changes}
    assert [c["key"]["product_id"] for c in changes] == ["P2", "P1", "NEW", "GONE"]
    assert by_product["P2"] == {"key": {"product_id": "P2"}, "status": "unchanged", "changes": {}}
    p1 = by_product["P1"]
    assert p1["status"] == "changed"
    assert p1["changes"]["recommended_price"]["before"] == 2.2
    assert p1["changes"]["recommended_price"]["after"] == 2.5
    assert p1["changes"]["recommended_price"]["delta"] == pytest.approx(0.3)
    assert p1["changes"]["note"] == {"before": None, "after": "more data"}
    assert set(p1["changes"]) == {"recommended_price", "note"}
    assert by_product["NEW"]["status"] == "added"
    assert by_product["NEW"]["changes"]["recommended_price"] == {
        "before": None,
        "after": 4.0,
    }
    assert by_product["GONE"]["status"] == "removed"
    assert by_product["GONE"]["changes"]["recommended_price"]["before"] == 1.0


def test_compare_forecasts_by_scope_key_and_horizon() -> None:
    def row(horizon: str, predicted: list[float]) -> dict[str, Any]:
        return {"scope": "category", "key": "bakery", "horizon": horizon, "predicted": predicted}

    changes = compare_rows(
        "forecast",
        [row("daily", [1.0, 2.0]), row("weekly", [10.0])],
        [row("weekly", [12.0]), row("daily", [1.0, 2.0])],
    )
    assert [(c["key"]["horizon"], c["status"]) for c in changes] == [
        ("weekly", "changed"),
        ("daily", "unchanged"),
    ]
    assert changes[0]["key"] == {"scope": "category", "key": "bakery", "horizon": "weekly"}
    assert changes[0]["changes"] == {"predicted": {"before": [10.0], "after": [12.0]}}


def test_compare_refuses_missing_ids_and_other_kinds(store: InsightStore) -> None:
    pricing = store.save("pricing", [price_row("P1", 2.2)], **META)
    value = store.save("value", [{"node": "shop-1"}], **META)
    with pytest.raises(InsightStoreError, match="holds value, not pricing"):
        store.compare("pricing", pricing.id, value.id)
    with pytest.raises(InsightStoreError, match="no insight batch #999"):
        store.compare("pricing", pricing.id, 999)


def test_every_kind_has_a_natural_key(store: InsightStore) -> None:
    for kind in KINDS:
        older = store.save(kind, [{"x": 1}], **META)
        newer = store.save(kind, [{"x": 2}], **META)
        [change] = store.compare(kind, older.id, newer.id)
        assert change["status"] == "changed"
        assert change["changes"]["x"] == {"before": 1, "after": 2, "delta": 1}


def test_reading_insights_needs_neither_torch_nor_pandas() -> None:
    """The view-only app opens the store, exports and the report; they must stay light."""
    code = (
        "import sys\n"
        "import shared.insights.store, shared.insights.export, shared.insights.html_report\n"
        "heavy = [m for m in ('torch', 'pandas', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""
