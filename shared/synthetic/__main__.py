"""``python -m shared.synthetic OUT_DIR`` writes a demo data set from the command line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from shared.synthetic.generate import generate_demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate synthetic retailer exports.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--retailers", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    manifest = generate_demo(args.out_dir, args.retailers, args.seed, scale=args.scale)
    for entry in manifest.retailers:
        print(
            f"{entry.relative_path:32} {entry.dialect:18} {entry.rows:>7} rows "
            f"{entry.products:>4} products {entry.baskets:>6} baskets"
        )
    print(
        f"{manifest.total_rows} rows in {time.perf_counter() - started:.1f} s; "
        f"ground truth: {manifest.ground_truth_path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
