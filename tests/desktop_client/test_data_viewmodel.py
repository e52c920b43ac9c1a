"""The Data page's view-model without Qt: mapping origin, remapping, summary, problems, use."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from desktop_client.viewmodels.data_import import (
    BUSY,
    CancelToken,
    DataImportViewModel,
    ImportCancelled,
    MappingOrigin,
    prepared_data,
)
from shared.federation.node import CANONICAL_FILE, NODE_FILE
from shared.privacy import LEDGER_FILENAME
from shared.synthetic import generate_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Realistic exports in two dialects (plain CSV, German semicolon CSV)."""
    manifest = generate_demo(tmp_path_factory.mktemp("demo"), retailers=2, seed=11, scale=0.1)
    return [retailer.path for retailer in manifest.retailers]


def test_a_new_layout_gets_a_suggestion_and_a_valid_report(
    tmp_path: Path, demo: list[Path]
) -> None:
    vm = DataImportViewModel(tmp_path / "node")
    progress: list[int] = []
    vm.accept(vm.analyse(demo[1], progress=lambda pct, _text: progress.append(pct)))
    assert vm.outcome is not None and vm.outcome.origin is MappingOrigin.SUGGESTED
    rows = {row.field: row for row in vm.field_rows()}
    assert rows["quantity_sold"].source == "Menge"
    assert rows["price"].source == "Preis"
    assert rows["quantity_sold"].confidence is not None and rows["quantity_sold"].confidence > 0.5
    summary = vm.summary()
    assert summary is not None and summary.valid and summary.readable
    assert summary.rows_read == summary.rows_kept > 100
    assert vm.problem() is None
    assert progress[0] == 5 and progress[-1] == 100 and BUSY in progress
    frame = vm.preview_frame()
    assert frame is not None and len(frame) == summary.rows_kept


def test_a_saved_mapping_is_applied_to_the_same_layout(tmp_path: Path, demo: list[Path]) -> None:
    vm = DataImportViewModel(tmp_path / "node")
    vm.accept(vm.analyse(demo[0]))
    edited = vm.remapped("unit_cost", None)  # the owner says: do not use my cost column
    vm.accept(vm.analyse(demo[0], edited))
    assert vm.outcome is not None and vm.outcome.origin is MappingOrigin.EDITED
    vm.save_mapping()
    again = DataImportViewModel(tmp_path / "node")
    again.accept(again.analyse(demo[0]))
    assert again.outcome is not None and again.outcome.origin is MappingOrigin.SAVED
    assert again.mapping is not None and "unit_cost" not in again.mapping.columns
    other = DataImportViewModel(tmp_path / "node")  # another layout: not the saved one
    other.accept(other.analyse(demo[1]))
    assert other.outcome is not None and other.outcome.origin is MappingOrigin.SUGGESTED


def test_remapping_keeps_one_column_per_field(tmp_path: Path, demo: list[Path]) -> None:
    vm = DataImportViewModel(tmp_path / "node")
    vm.accept(vm.analyse(demo[0]))
    assert vm.mapping is not None
    price_source = vm.mapping.columns["price"]
    moved = vm.remapped("unit_cost", price_source)
    assert moved.columns["unit_cost"] == price_source
    assert "price" not in moved.columns  # the column left the field it fed
    assert vm.mapping.columns["price"] == price_source  # the shown mapping is unchanged
    with pytest.raises(ValueError, match="no column"):
        vm.remapped("price", "Not A Header")
    with pytest.raises(ValueError, match="canonical field"):
        vm.remapped("colour", None)


def test_an_unmapped_core_field_makes_the_file_unusable_with_a_plain_reason(
    tmp_path: Path, demo: list[Path]
) -> None:
    vm = DataImportViewModel(tmp_path / "node")
    vm.accept(vm.analyse(demo[0]))
    vm.accept(vm.analyse(demo[0], vm.remapped("product_id", None)))
    summary = vm.summary()
    assert summary is not None and not summary.valid and summary.errors >= 1
    problem = vm.problem()
    assert problem is not None and demo[0].name in problem and "mapping" in problem
    assert vm.usable_frame() is None
    with pytest.raises(ValueError):
        vm.use_data()


def test_a_bad_value_is_named_by_row_and_column(tmp_path: Path) -> None:
    source = tmp_path / "till.csv"
    source.write_text(
        "SKU,Qty,Price,Date,Category\nA1,1,2.50,2025-01-01,Bread\nA2,lots,2.50,2025-01-02,Bread\n",
        "utf-8",
    )
    vm = DataImportViewModel(tmp_path / "node")
    vm.accept(vm.analyse(source))
    problem = vm.problem()
    assert problem is not None
    assert "till.csv" in problem and "row 3" in problem and "'Qty'" in problem
    assert "Fix the file" in problem
    issue = next(i for i in vm.issues() if i.row == 3)
    assert issue.column == "Qty" and issue.value == "lots"


def test_a_binary_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    source = tmp_path / "sales.csv"
    source.write_bytes(bytes(range(256)) * 20)
    vm = DataImportViewModel(tmp_path / "node")
    vm.accept(vm.analyse(source))
    summary = vm.summary()
    assert summary is not None and not summary.readable
    problem = vm.problem()
    assert problem is not None and str(source) in problem and "CSV" in problem


def test_cancel_stops_the_analysis(tmp_path: Path, demo: list[Path]) -> None:
    vm = DataImportViewModel(tmp_path / "node")
    token = CancelToken()
    token.cancel()
    with pytest.raises(ImportCancelled):
        vm.analyse(demo[0], cancel=token)
    assert vm.outcome is None


def test_use_data_prepares_the_node_like_join_does(tmp_path: Path, demo: list[Path]) -> None:
    node = tmp_path / "node"
    vm = DataImportViewModel(node)
    vm.accept(vm.analyse(demo[1]))
    written = vm.use_data()
    assert written == node / CANONICAL_FILE
    frame = pd.read_parquet(written)
    summary = vm.summary()
    assert summary is not None and len(frame) == summary.rows_kept
    assert json.loads((node / NODE_FILE).read_text("utf-8"))["name"] == "node"
    assert (node / LEDGER_FILENAME).exists()
    prepared = prepared_data(node)
    assert prepared is not None and prepared.rows == len(frame) and prepared.name == "node"
    assert sorted(p.name for p in node.iterdir() if p.name.endswith(".tmp")) == []


def test_cancelled_use_keeps_the_previous_data_whole(tmp_path: Path, demo: list[Path]) -> None:
    node = tmp_path / "node"
    vm = DataImportViewModel(node)
    vm.accept(vm.analyse(demo[1]))
    vm.use_data()
    before = (node / CANONICAL_FILE).read_bytes()
    vm.accept(vm.analyse(demo[1], vm.remapped("unit_cost", None)))  # a different frame
    token = CancelToken()

    def cancel_midway(percent: int, _text: str) -> None:
        if percent >= 80:
            token.cancel()  # the owner presses Cancel while the files are being written

    with pytest.raises(ImportCancelled):
        vm.use_data(progress=cancel_midway, cancel=token)
    assert (node / CANONICAL_FILE).read_bytes() == before
    assert [p for p in node.iterdir() if p.name.endswith(".tmp")] == []


def test_the_pages_file_names_are_the_nodes() -> None:
    """data_files repeats the names so the pages need not import torch; they must agree."""
    from desktop_client.viewmodels import data_files
    from shared.federation import node
    from shared.insights.store import INSIGHTS_FILENAME
    from shared.privacy import LEDGER_FILENAME as LEDGER

    assert data_files.CANONICAL_FILE == node.CANONICAL_FILE
    assert data_files.NODE_FILE == node.NODE_FILE
    assert data_files.LEDGER_FILENAME == LEDGER
    assert data_files.INSIGHTS_FILENAME == INSIGHTS_FILENAME
