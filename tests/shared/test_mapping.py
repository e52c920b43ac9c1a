"""Column mapping: suggestions from headers and values, mapping files and the per-layout store."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from shared.ingest import DateOrder
from shared.ingest.mapping import (
    MAPPING_FORMAT,
    ColumnMapping,
    MappingFileError,
    MappingStore,
    header_score,
    load_mapping,
    profile_column,
    save_mapping,
    source_key,
    suggest_mapping,
)
from shared.schema import FIELD_NAMES


def _table(columns: dict[str, list[str | None]]) -> pa.Table:
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def _suggested(columns: dict[str, list[str | None]]) -> dict[str, str]:
    """field -> source header of the suggestion."""
    return {s.field: s.source for s in suggest_mapping(_table(columns)).columns}


# --------------------------------------------------------------------------------------------
# Header suggestions


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Qty", "quantity_sold"),
        ("Units Sold", "quantity_sold"),
        ("SKU", "product_id"),
        ("Item", "product_id"),
        ("Unit Price", "price"),
        ("Date", "timestamp"),
        ("Store", "retailer_id"),
        ("Receipt #", "transaction_id"),
        ("Customer #", "customer_id"),
        ("Artikelnummer", "product_id"),
        ("Menge", "quantity_sold"),
        ("Preis", "price"),
        ("Datum", "timestamp"),
        ("Warengruppe", "category"),
        ("Kundennummer", "customer_id"),
        ("Bonnummer", "transaction_id"),
        ("Filiale", "retailer_id"),
        ("Einkaufspreis", "unit_cost"),
        ("Lagerbestand", "inventory_level"),
        ("Aktion", "promotion_active"),
        ("ARTIKEL-NR.", "product_id"),
        ("  unit_price ", "price"),
    ],
)
def test_single_header_is_recognised(header: str, field: str) -> None:
    suggestion = suggest_mapping(_table({header: ["x", "y", "z"]}))
    assert [(s.source, s.field) for s in suggestion.columns] == [(header, field)]
    assert suggestion.columns[0].reason == "header"
    assert suggestion.columns[0].confidence >= 0.9


def test_header_score_exact_beats_partial() -> None:
    assert header_score("Price", "price") == pytest.approx(0.95)
    assert 0.5 < header_score("Regular Price EUR", "price") < 0.95
    assert header_score("Weather", "price") == 0.0
    assert header_score("", "price") == 0.0


def test_common_english_export() -> None:
    headers = ["Date", "Receipt #", "Store", "SKU", "Item Description", "Qty", "Unit Price"]
    mapped = _suggested({h: ["x"] * 3 for h in headers} | {"Customer #": ["c"] * 3})
    assert mapped["timestamp"] == "Date"
    assert mapped["transaction_id"] == "Receipt #"
    assert mapped["retailer_id"] == "Store"
    assert mapped["product_id"] == "SKU"
    assert mapped["quantity_sold"] == "Qty"
    assert mapped["price"] == "Unit Price"
    assert mapped["customer_id"] == "Customer #"


def test_german_export() -> None:
    headers = ["Datum", "Bonnummer", "Artikelnummer", "Warengruppe", "Menge", "Preis"]
    mapped = _suggested({h: ["x"] * 3 for h in headers})
    assert mapped == {
        "timestamp": "Datum",
        "transaction_id": "Bonnummer",
        "product_id": "Artikelnummer",
        "category": "Warengruppe",
        "quantity_sold": "Menge",
        "price": "Preis",
    }


def test_assignment_is_one_to_one() -> None:
    # "Qty" and "Quantity" both say quantity_sold; "SKU" and "Item" both say product_id.
    suggestion = suggest_mapping(
        _table({h: ["x"] * 3 for h in ["Qty", "Quantity", "SKU", "Item", "Price"]})
    )
    fields = [s.field for s in suggestion.columns]
    sources = [s.source for s in suggestion.columns]
    assert len(fields) == len(set(fields))
    assert len(sources) == len(set(sources))
    assert {s.field: s.source for s in suggestion.columns}["quantity_sold"] in {"Qty", "Quantity"}
    assert len(suggestion.unmapped_sources) == 2
    assert set(suggestion.unmapped_sources) <= {"Qty", "Quantity", "SKU", "Item"}


def test_suggestion_lists_missing_fields_and_unmapped_sources() -> None:
    suggestion = suggest_mapping(_table({"SKU": ["a"], "Weather": [None]}))
    assert "price" in suggestion.missing_fields
    assert "product_id" not in suggestion.missing_fields
    data = suggestion.to_json()
    assert json.loads(json.dumps(data)) == data
    assert {c["field"] for c in data["columns"]} == {"product_id"}
    assert all(0.0 <= c["confidence"] <= 1.0 for c in data["columns"])


def test_suggested_mapping_respects_confidence_threshold() -> None:
    table = _table({"SKU": ["a", "b"], "Qty": ["1", "2"]})
    mapping = suggest_mapping(table).to_mapping(min_confidence=0.5)
    assert mapping.columns == {"product_id": "SKU", "quantity_sold": "Qty"}
    assert suggest_mapping(table).to_mapping(min_confidence=0.99).columns == {}


# --------------------------------------------------------------------------------------------
# Value-profile suggestions


def _meaningless(n: int = 60) -> dict[str, list[str | None]]:
    return {
        "col1": [f"2026-03-{1 + i % 28:02d}" for i in range(n)],
        "col2": [str(1 + i % 4) for i in range(n)],
        "col3": [f"{1 + (i % 17) * 0.37:.2f}" for i in range(n)],
        "col4": [f"SKU-{i:04d}" for i in range(n)],
        "col5": [["Bakery", "Dairy", "Produce"][i % 3] for i in range(n)],
    }


def test_value_profiles_map_meaningless_headers() -> None:
    suggestion = suggest_mapping(_table(_meaningless()))
    mapped = {s.field: s.source for s in suggestion.columns}
    assert mapped["timestamp"] == "col1"
    assert mapped["quantity_sold"] == "col2"
    assert mapped["price"] == "col3"
    assert mapped["product_id"] == "col4"
    assert mapped["category"] == "col5"
    assert all(s.reason == "values" for s in suggestion.columns)
    assert all(s.confidence < 0.9 for s in suggestion.columns)


def test_value_profiles_with_day_first_dates() -> None:
    columns = _meaningless()
    columns["col1"] = [f"{1 + i % 28:02d}.03.2026 10:{i % 60:02d}" for i in range(60)]
    assert _suggested(columns)["timestamp"] == "col1"


def test_header_evidence_beats_value_evidence() -> None:
    columns = _meaningless()
    columns["Price"] = [f"{2 + i * 0.5:.2f}" for i in range(60)]
    mapped = _suggested(columns)
    assert mapped["price"] == "Price"


def test_profile_column() -> None:
    profile = profile_column(pa.array(["1", "2", "3", None, "2"], pa.string()))
    assert profile.non_null == 4
    assert profile.numeric == 1.0
    assert profile.integer == 1.0
    assert profile.median == 2.0

    dates = profile_column(pa.array(["2026-03-01", "2026-03-02", "bad"], pa.string()))
    assert dates.dates == pytest.approx(2 / 3)

    empty = profile_column(pa.array([None, None], pa.string()))
    assert empty.non_null == 0


def test_profile_of_plain_text_is_no_date() -> None:
    profile = profile_column(pa.array([f"SKU-{i}" for i in range(50)], pa.string()))
    assert profile.dates == 0.0
    assert profile.numeric == 0.0


# --------------------------------------------------------------------------------------------
# Mapping files


def _full_mapping() -> ColumnMapping:
    return ColumnMapping(
        columns={
            "quantity_sold": "Menge",
            "product_id": "Artikelnummer",
            "timestamp": "Datum",
            "price": "Preis",
            "category": "Warengruppe",
        },
        categories={"Backwaren": "bakery", "Getränke": "beverages"},
        date_order=DateOrder.DAY_FIRST,
        decimal=",",
        thousands=".",
        taxonomy_version="2026.1",
    )


def test_to_json_from_json_round_trip() -> None:
    mapping = _full_mapping()
    data = mapping.to_json()
    assert data["format"] == MAPPING_FORMAT
    assert data["date_order"] == "day-first"
    # canonical field order, whatever order the dict was built in
    assert list(data["columns"]) == [f for f in FIELD_NAMES if f in mapping.columns]
    again = ColumnMapping.from_json(json.loads(json.dumps(data)))
    assert again == mapping


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    mapping = _full_mapping()
    path = tmp_path / "nested" / "dir" / "mapping.json"
    save_mapping(mapping, path)
    assert path.exists()
    assert not path.with_suffix(".json.tmp").exists()
    text = path.read_text("utf-8")
    assert "Getränke" in text  # written as readable UTF-8, not \u escapes
    assert load_mapping(path) == mapping


def test_minimal_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"columns": {"product_id": "SKU", "quantity_sold": "Qty"}}', "utf-8")
    mapping = load_mapping(path)
    assert mapping.columns == {"product_id": "SKU", "quantity_sold": "Qty"}
    assert mapping.categories == {}
    assert mapping.date_order is None
    assert mapping.decimal is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"columns": {"produkt": "SKU"}}', "'produkt' is not a canonical field"),
        ('{"columns": {"product_id": "SKU",', "not a readable JSON mapping file"),
        ("[1, 2]", '"columns" object'),
        ('{"columns": ["SKU"]}', '"columns" object'),
        ('{"columns": {"product_id": 7}}', "must be a header name"),
        ('{"columns": {"product_id": ""}}', "must be a header name"),
        (
            '{"columns": {"product_id": "SKU"}, "date_order": "year-first"}',
            '"date_order" must be "day-first" or "month-first"',
        ),
        ('{"columns": {}, "categories": ["x"]}', '"categories" must map'),
        ('{"columns": {}, "decimal": ";"}', '"decimal" must be'),
        ('{"columns": {}, "thousands": "_"}', '"thousands" must be'),
        ('{"columns": {}, "decimal": ",", "thousands": ","}', "must differ"),
    ],
)
def test_bad_mapping_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, "utf-8")
    with pytest.raises(MappingFileError) as info:
        load_mapping(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message


def test_unknown_field_message_lists_valid_fields(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"columns": {"qty": "Menge"}}', "utf-8")
    with pytest.raises(MappingFileError) as info:
        load_mapping(path)
    assert "quantity_sold" in str(info.value)
    assert "product_id" in str(info.value)


def test_missing_and_undecodable_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match="not found"):
        load_mapping(tmp_path / "nope.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(MappingFileError, match="not a readable JSON"):
        load_mapping(binary)


# --------------------------------------------------------------------------------------------
# Per-layout store


def test_store_keyed_by_header_signature(tmp_path: Path) -> None:
    store = MappingStore(tmp_path / "mappings")
    headers = ["Datum", "Artikelnummer", "Menge", "Preis", "Warengruppe"]
    assert store.load(headers) is None
    mapping = _full_mapping()
    saved = store.save(headers, mapping)
    assert saved.exists()
    assert saved.parent == tmp_path / "mappings"

    assert store.load(headers) == mapping
    reordered = ["Preis", "Menge", "Warengruppe", "Datum", "Artikelnummer"]
    assert store.path_for(reordered) == saved
    assert store.load(reordered) == mapping
    # Spellings that normalise equal share the layout key, but a mapping is only handed back
    # when every column it names exists verbatim (it could not be applied otherwise).
    respelled = ["DATUM", "artikelnummer", "Menge ", "preis", "Warengruppe"]
    assert store.path_for(respelled) == saved
    assert store.load(respelled) is None

    assert store.load(["Datum", "Artikelnummer", "Menge", "Preis"]) is None
    assert store.load([*headers, "Kunde"]) is None


def test_source_key_is_order_independent_and_layout_specific() -> None:
    assert source_key(["a", "b", "c"]) == source_key(["c", "a", "b"])
    assert source_key(["a", "b", "c"]) != source_key(["a", "b", "d"])
    assert len(source_key(["a"])) == 20


def test_store_ignores_mapping_whose_columns_are_absent(tmp_path: Path) -> None:
    store = MappingStore(tmp_path)
    headers = ["SKU", "Qty"]
    path = store.path_for(headers)
    save_mapping(ColumnMapping(columns={"product_id": "SKU", "price": "Price"}), path)
    assert store.load(headers) is None
