"""``retail-node``: map and validate, their JSON output and their exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from desktop_client.node_cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, main

HEADER = ["Date", "SKU", "Category", "Qty", "Unit Price", "Promo", "Receipt #", "Customer #"]
PRODUCTS = [(f"P{i:02d}", ["Bakery", "Dairy", "Produce"][i % 3], 1.0 + i * 0.75) for i in range(12)]


def sales_rows(days: int = 100, per_day: int = 6) -> list[list[str]]:
    """Enough history, products and baskets for every task's default minimums."""
    start = date(2024, 1, 1)
    rows = []
    for day in range(days):
        for line in range(per_day):
            sku, category, price = PRODUCTS[(day * per_day + line) % len(PRODUCTS)]
            basket = day * 3 + line // 2
            rows.append(
                [
                    (start + timedelta(days=day)).isoformat(),
                    sku,
                    category,
                    str(1 + (day + line) % 4),
                    f"{price:.2f}",
                    "yes" if (day + line) % 7 == 0 else "no",
                    f"R{basket}",
                    f"C{basket % 40}",
                ]
            )
    return rows


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", "utf-8")
    return path


@pytest.fixture
def valid_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "sales.csv", sales_rows())


@pytest.fixture
def invalid_csv(tmp_path: Path) -> Path:
    rows = sales_rows()
    rows[3][4] = "abc"  # spreadsheet row 5
    rows[9][1] = ""  # spreadsheet row 11
    return write_csv(tmp_path / "broken.csv", rows)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = run_cli(capsys, *argv, "--json")
    return code, json.loads(out)


# --------------------------------------------------------------------------------------------
# map


def test_map_json_prints_suggestion_with_confidence(
    capsys: pytest.CaptureFixture[str], valid_csv: Path, tmp_path: Path
) -> None:
    code, data = run_json(capsys, "map", valid_csv, "--data-dir", tmp_path / "node")
    assert code == EXIT_OK
    assert data["file"] == str(valid_csv)
    assert data["headers"] == HEADER
    by_field = {c["field"]: c for c in data["columns"]}
    assert by_field["product_id"]["source"] == "SKU"
    assert by_field["quantity_sold"]["source"] == "Qty"
    assert by_field["price"]["source"] == "Unit Price"
    assert by_field["timestamp"]["source"] == "Date"
    assert by_field["transaction_id"]["source"] == "Receipt #"
    assert by_field["customer_id"]["source"] == "Customer #"
    for column in data["columns"]:
        assert 0.0 < column["confidence"] <= 1.0
        assert column["reason"] in {"header", "values"}
    assert "inventory_level" in data["missing_fields"]
    assert data["unmapped_sources"] == []
    assert "saved_to" not in data
    assert not (tmp_path / "node" / "mappings").exists()


def test_map_human_output(capsys: pytest.CaptureFixture[str], valid_csv: Path) -> None:
    code, out, _ = run_cli(capsys, "map", valid_csv)
    assert code == EXIT_OK
    assert "product_id" in out
    assert "'SKU'" in out
    assert "confidence 0.95" in out


def test_map_save_writes_the_mapping_into_the_data_dir(
    capsys: pytest.CaptureFixture[str], valid_csv: Path, tmp_path: Path
) -> None:
    node = tmp_path / "node"
    code, data = run_json(capsys, "map", valid_csv, "--save", "--data-dir", node)
    assert code == EXIT_OK
    saved = Path(data["saved_to"])
    assert saved.exists()
    assert saved.parent == node / "mappings"


def test_map_unreadable_and_missing_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x00\x01\x02binary")
    code, data = run_json(capsys, "map", garbage)
    assert code == EXIT_USAGE
    assert data["ok"] is False
    assert "binary" in data["error"]

    code, out, err = run_cli(capsys, "map", tmp_path / "nope.csv")
    assert code == EXIT_USAGE
    assert "not found" in err
    assert "Traceback" not in out + err


def test_map_meaningless_headers_does_not_crash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = [r[:5] for r in sales_rows(days=10)]
    path = write_csv(tmp_path / "plain.csv", rows, ["c1", "c2", "c3", "c4", "c5"])
    code, data = run_json(capsys, "map", path)
    assert code == EXIT_OK
    by_field = {c["field"]: c["source"] for c in data["columns"]}
    assert by_field["timestamp"] == "c1"
    assert all(c["reason"] == "values" for c in data["columns"])


# --------------------------------------------------------------------------------------------
# validate: exit codes and JSON


def test_validate_valid_file_exits_0(
    capsys: pytest.CaptureFixture[str], valid_csv: Path, tmp_path: Path
) -> None:
    code, data = run_json(capsys, "validate", valid_csv, "--data-dir", tmp_path / "node")
    assert code == EXIT_OK, data
    assert data["valid"] is True
    assert data["readable"] is True
    assert data["row_count"] == 600
    assert data["imported_rows"] == 600
    assert data["error_count"] == 0
    assert data["errors"] == []
    assert data["mapping"]["product_id"] == "SKU"
    assert data["mapping"]["price"] == "Unit Price"
    assert data["mapping_file"]["columns"]["quantity_sold"] == "Qty"
    assert all(task["ready"] for task in data["tasks"].values())
    assert set(data["tasks"]) == {"demand_pricing", "forecasting", "bundles"}


def test_validate_human_output(
    capsys: pytest.CaptureFixture[str], valid_csv: Path, tmp_path: Path
) -> None:
    code, out, err = run_cli(capsys, "validate", valid_csv, "--data-dir", tmp_path / "node")
    assert code == EXIT_OK
    assert "VALID" in out
    assert "600" in out
    assert "Traceback" not in out + err


def test_validate_invalid_file_exits_1_with_located_errors(
    capsys: pytest.CaptureFixture[str], invalid_csv: Path, tmp_path: Path
) -> None:
    code, data = run_json(capsys, "validate", invalid_csv, "--data-dir", tmp_path / "node")
    assert code == EXIT_INVALID
    assert data["valid"] is False
    assert data["readable"] is True
    assert data["error_count"] == 2
    errors = {(e["row"], e["column"]): e for e in data["errors"]}
    assert errors[(5, "Unit Price")]["value"] == "abc"
    assert "not a number" in errors[(5, "Unit Price")]["message"]
    assert "product_id is empty" in errors[(11, "SKU")]["message"]
    assert data["imported_rows"] == 598
    for warning in data["warnings"]:
        assert {"row", "column", "message", "kind"} <= set(warning)


def test_validate_unreadable_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100))
    code, data = run_json(capsys, "validate", old, "--data-dir", tmp_path / "node")
    assert code == EXIT_USAGE
    assert data["readable"] is False
    assert ".xlsx" in data["errors"][0]["message"]


def test_validate_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(
        capsys, "validate", tmp_path / "nope.csv", "--data-dir", tmp_path / "node"
    )
    assert code == EXIT_USAGE
    assert "not found" in out + err
    assert "Traceback" not in out + err


def test_validate_strict_tasks_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = [r[:6] for r in sales_rows()]
    path = write_csv(tmp_path / "nobaskets.csv", rows, HEADER[:6])
    node = tmp_path / "node"
    code, data = run_json(capsys, "validate", path, "--tasks", "forecasting", "--data-dir", node)
    assert code == EXIT_OK, data
    assert set(data["tasks"]) == {"forecasting"}
    code, data = run_json(capsys, "validate", path, "--tasks", "bundles", "--data-dir", node)
    assert code == EXIT_INVALID
    assert any("bundle" in e["message"] for e in data["errors"])
    code, data = run_json(capsys, "validate", path, "--tasks", "teleport", "--data-dir", node)
    assert code == EXIT_USAGE
    assert "teleport" in data["error"]


def test_validate_date_order_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = sales_rows()
    for row in rows:  # 2024-01-05 -> 01/05/2024: every day <= 12 is ambiguous
        year, month, day = row[0].split("-")
        row[0] = f"{month}/{day}/{year}"
    rows = [r for r in rows if int(r[0].split("/")[1]) <= 12]
    path = write_csv(tmp_path / "us.csv", rows)
    node = tmp_path / "node"
    code, data = run_json(capsys, "validate", path, "--tasks", "forecasting", "--data-dir", node)
    assert code == EXIT_INVALID
    assert any("--date-order" in e["message"] for e in data["errors"])
    code, data = run_json(
        capsys,
        "validate",
        path,
        "--tasks",
        "demand_pricing",
        "--date-order",
        "month-first",
        "--data-dir",
        node,
    )
    assert not any(e["kind"] == "ambiguous_dates" for e in data["errors"])
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path), "--date-order", "year-first"])
    assert info.value.code == EXIT_USAGE


# --------------------------------------------------------------------------------------------
# validate: mapping files


def _mapping_file(tmp_path: Path, columns: dict[str, str], **extra: Any) -> Path:
    path = tmp_path / "MAP.json"
    path.write_text(json.dumps({"columns": columns, **extra}), "utf-8")
    return path


PLAIN = ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"]
PLAIN_MAPPING = {
    "timestamp": "c1",
    "product_id": "c2",
    "category": "c3",
    "quantity_sold": "c4",
    "price": "c5",
    "promotion_active": "c6",
    "transaction_id": "c7",
    "customer_id": "c8",
}


def test_validate_with_mapping_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_csv(tmp_path / "plain.csv", sales_rows(), PLAIN)
    mapping = _mapping_file(tmp_path, PLAIN_MAPPING)
    code, data = run_json(
        capsys, "validate", path, "--mapping", mapping, "--data-dir", tmp_path / "node"
    )
    assert code == EXIT_OK, data
    assert data["mapping"] == {
        "product_id": "c2",
        "category": "c3",
        "price": "c5",
        "quantity_sold": "c4",
        "timestamp": "c1",
        "promotion_active": "c6",
        "customer_id": "c8",
        "transaction_id": "c7",
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"columns": {"produkt": "c2"}}', "not a canonical field"),
        ("{not json", "not a readable JSON mapping file"),
        ('{"columns": {"product_id": "c2"}, "date_order": "sideways"}', "date_order"),
    ],
)
def test_validate_bad_mapping_file_exits_2_without_traceback(
    capsys: pytest.CaptureFixture[str], valid_csv: Path, tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content, "utf-8")
    code, out, err = run_cli(
        capsys, "validate", valid_csv, "--mapping", bad, "--data-dir", tmp_path / "node"
    )
    assert code == EXIT_USAGE
    assert expected in err
    assert str(bad) in err
    assert err.startswith("error: ")
    assert "Traceback" not in out + err

    code, data = run_json(
        capsys, "validate", valid_csv, "--mapping", bad, "--data-dir", tmp_path / "node"
    )
    assert code == EXIT_USAGE
    assert data["ok"] is False
    assert expected in data["error"]


def test_validate_missing_mapping_file_exits_2(
    capsys: pytest.CaptureFixture[str], valid_csv: Path, tmp_path: Path
) -> None:
    code, data = run_json(
        capsys, "validate", valid_csv, "--mapping", tmp_path / "nope.json", "--data-dir", tmp_path
    )
    assert code == EXIT_USAGE
    assert "mapping file not found" in data["error"]


def test_mapping_and_auto_map_are_exclusive(valid_csv: Path, tmp_path: Path) -> None:
    mapping = _mapping_file(tmp_path, PLAIN_MAPPING)
    with pytest.raises(SystemExit) as info:
        main(["validate", str(valid_csv), "--mapping", str(mapping), "--auto-map"])
    assert info.value.code == EXIT_USAGE


def test_save_mapping_then_reuse_without_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    header = [*PLAIN, "Notes"]  # an unmapped column is part of the layout, too
    path = write_csv(tmp_path / "plain.csv", [[*r, ""] for r in sales_rows()], header)
    node = tmp_path / "node"
    mapping = _mapping_file(tmp_path, PLAIN_MAPPING, date_order="day-first")

    code, data = run_json(
        capsys, "validate", path, "--mapping", mapping, "--save-mapping", "--data-dir", node
    )
    assert code == EXIT_OK, data
    saved = Path(data["mapping_saved_to"])
    assert saved.exists()
    assert saved.parent == node / "mappings"
    stored = json.loads(saved.read_text("utf-8"))
    assert stored["columns"]["price"] == "c5"
    assert stored["date_order"] == "day-first"
    assert stored["categories"]["Bakery"] == "bakery"

    code, data = run_json(capsys, "validate", path, "--data-dir", node)
    assert code == EXIT_OK, data
    assert data["mapping"]["price"] == "c5"
    assert data["mapping"]["customer_id"] == "c8"
    assert data["mapping_file"]["date_order"] == "day-first"

    # --auto-map ignores the saved mapping and suggests one from the values instead
    code, data = run_json(capsys, "validate", path, "--auto-map", "--data-dir", node)
    assert data["mapping_file"]["date_order"] is None
    assert data["mapping"] != PLAIN_MAPPING


def test_save_mapping_is_skipped_when_invalid(
    capsys: pytest.CaptureFixture[str], invalid_csv: Path, tmp_path: Path
) -> None:
    node = tmp_path / "node"
    code, data = run_json(capsys, "validate", invalid_csv, "--save-mapping", "--data-dir", node)
    assert code == EXIT_INVALID
    assert "mapping_saved_to" not in data
    assert not (node / "mappings").exists() or not any((node / "mappings").iterdir())


def test_output_writes_canonical_parquet_and_keeps_source(
    capsys: pytest.CaptureFixture[str], valid_csv: Path, tmp_path: Path
) -> None:
    before = valid_csv.read_bytes()
    out = tmp_path / "canonical" / "sales.parquet"
    code, data = run_json(
        capsys, "validate", valid_csv, "--output", out, "--data-dir", tmp_path / "node"
    )
    assert code == EXIT_OK
    assert data["canonical"] == str(out)
    table = pq.read_table(out)
    assert table.num_rows == 600
    assert "customer_id" in table.column_names
    assert b"C1," not in out.read_bytes()
    assert valid_csv.read_bytes() == before


def test_customer_key_is_per_node_and_stable(
    capsys: pytest.CaptureFixture[str], valid_csv: Path, tmp_path: Path
) -> None:
    def hashes(node: Path) -> set[str]:
        out = tmp_path / f"{node.name}.parquet"
        code, _ = run_json(capsys, "validate", valid_csv, "--output", out, "--data-dir", node)
        assert code == EXIT_OK
        return {str(v) for v in pq.read_table(out).column("customer_id").to_pylist()}

    first = hashes(tmp_path / "node-a")
    assert first == hashes(tmp_path / "node-a")
    assert first.isdisjoint(hashes(tmp_path / "node-b"))
    assert (tmp_path / "node-a" / "keys" / "customer-hash.key").exists()


# --------------------------------------------------------------------------------------------
# As a real process


def test_console_entry_point_in_a_subprocess(valid_csv: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "desktop_client.node_cli"]
    mapped = subprocess.run(
        [*command, "map", str(valid_csv), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert mapped.returncode == EXIT_OK, mapped.stderr
    assert {c["field"] for c in json.loads(mapped.stdout)["columns"]} >= {"product_id", "price"}

    missing = subprocess.run(
        [*command, "validate", str(tmp_path / "nope.csv"), "--data-dir", str(tmp_path / "n")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == EXIT_USAGE
    assert "Traceback" not in missing.stdout + missing.stderr
    assert "not found" in missing.stdout + missing.stderr
