"""Ingest benchmark: a plain pandas+pyarrow read of a 1M-row CSV against the full import.

Prints JSON. Targets (from the foundation issue, not asserted here): the full import (read, map,
parse, validate, normalise, product-day aggregates) takes <= 2x the plain read, and its peak RSS
is <= 3x the canonical frame's in-memory size. Each measurement runs in a fresh process so one
does not inherit the other's memory.

    python tests/benchmarks/ingest.py [--rows 1000000] [--repeat 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv


def write_csv(path: Path, rows: int, seed: int = 1) -> None:
    """A realistic POS export: 2,000 products, a year of timestamps, baskets, a few returns."""
    rng = np.random.default_rng(seed)
    products = rng.integers(0, 2000, rows)
    categories = np.array(["Bakery", "Dairy", "Beverages", "Snacks", "Produce", "Household"])
    base_price = np.round(rng.uniform(0.5, 40.0, 2000), 2)
    price = np.round(
        base_price[products] * rng.choice([1.0, 0.9, 0.8], rows, p=[0.8, 0.15, 0.05]), 2
    )
    quantity = rng.poisson(1.5, rows) + 1
    quantity[rng.random(rows) < 0.005] *= -1
    start = np.datetime64("2025-11-01T08:00:00", "s")
    seconds = np.sort(rng.integers(0, 365 * 86400, rows)).astype("timedelta64[s]")
    stamps = (start + seconds).astype(str)
    table = pa.table(
        {
            "SKU": pa.array(np.char.add("SKU-", products.astype(str))),
            "Department": pa.array(categories[products % len(categories)]),
            "Unit Price": pa.array(price),
            "Qty": pa.array(quantity),
            "Date": pa.array(np.char.replace(stamps, "T", " ")),
            "Customer Type": pa.array(rng.choice(["loyalty", "walk-in", "business"], rows)),
            "On Promo": pa.array(np.where(rng.random(rows) < 0.1, "Y", "N")),
            "Comp Price": pa.array(np.round(price * rng.uniform(0.9, 1.1, rows), 2)),
            "Stock On Hand": pa.array(rng.integers(0, 500, rows)),
            "Receipt #": pa.array(np.arange(rows) // 3),
            "Customer #": pa.array(rng.integers(0, 50_000, rows)),
            "Store": pa.array(np.full(rows, "Main street")),
        }
    )
    pa_csv.write_csv(table, path)


def peak_rss_mb() -> float:
    """VmHWM of this process; ru_maxrss would carry over the parent's peak across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, path: Path) -> dict[str, float]:
    """Run in a child process: time one read and report its own peak RSS."""
    import pandas as pd

    from shared.ingest import ImportOptions, import_file, product_day

    baseline = peak_rss_mb()
    started = time.perf_counter()
    out: dict[str, float] = {}
    if kind == "plain":
        frame = pd.read_csv(path, engine="pyarrow")
        out["rows"] = len(frame)
    else:
        result = import_file(
            path, options=ImportOptions(customer_key=b"benchmark-key-32-bytes-long-xxxx")
        )
        assert result.frame is not None, result.report.to_json()["errors"][:3]
        daily = product_day(result.frame)
        out["rows"] = len(result.frame)
        out["product_days"] = len(daily)
        out["canonical_frame_mb"] = result.frame.memory_usage(deep=True).sum() / 2**20
        out["errors"] = result.report.error_count
        out["warnings"] = result.report.warning_count
    out["seconds"] = time.perf_counter() - started
    out["baseline_rss_mb"] = baseline
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_child(kind: str, path: Path) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(completed.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write the CSV here and keep it")
    parser.add_argument("--measure", choices=["plain", "full"], help=argparse.SUPPRESS)
    parser.add_argument("file", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.file)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = (args.keep or Path(tmp)) / "sales_1m.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_csv(path, args.rows)
        generate_seconds = time.perf_counter() - started
        plain = min(
            (run_child("plain", path) for _ in range(args.repeat)), key=lambda r: r["seconds"]
        )
        full = min(
            (run_child("full", path) for _ in range(args.repeat)), key=lambda r: r["seconds"]
        )
        frame_mb = full["canonical_frame_mb"]
        print(
            json.dumps(
                {
                    "benchmark": "ingest",
                    "rows": args.rows,
                    "file_mb": round(path.stat().st_size / 2**20, 1),
                    "generate_seconds": round(generate_seconds, 2),
                    "plain_read_seconds": round(plain["seconds"], 3),
                    "full_import_seconds": round(full["seconds"], 3),
                    "ratio_full_to_plain": round(full["seconds"] / plain["seconds"], 2),
                    "target_ratio": 2.0,
                    "canonical_frame_mb": round(frame_mb, 1),
                    "full_peak_rss_mb": round(full["peak_rss_mb"], 1),
                    "full_baseline_rss_mb": round(full["baseline_rss_mb"], 1),
                    "peak_rss_to_frame": round(full["peak_rss_mb"] / frame_mb, 2),
                    "peak_rss_above_baseline_to_frame": round(
                        (full["peak_rss_mb"] - full["baseline_rss_mb"]) / frame_mb, 2
                    ),
                    "target_peak_rss_to_frame": 3.0,
                    "plain_peak_rss_mb": round(plain["peak_rss_mb"], 1),
                    "product_days": full["product_days"],
                    "report_errors": full["errors"],
                    "report_warnings": full["warnings"],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
