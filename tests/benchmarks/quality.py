"""Model-quality benchmark: what the private federated campaign costs and buys, vs ground truth.

Data: the default synthetic federation (``generate_demo``, 8 retailers, seed 7). The what-if study
(``shared.federation.study.run_study``, the engine behind ``retail-coordinator simulate``) runs the
real ServerApp/ClientApp with SecAgg+ and DP-SGD in Flower's simulation engine, then scores every
retailer's chronological holdout under a local-only model, the federated model (with the node's
own refitted product offsets) and a non-private centralised model on everyone's rows pooled, and
gives per-category elasticity intervals for the federated and the centralised model.

Privacy budget: ``--epsilon`` for the WHOLE campaign (default 3), split evenly over the rounds
(epsilon_per_round = epsilon / rounds), delta 1e-5, at least 5 participants, SecAgg+ always on.

Reported (JSON on stdout; nothing is asserted):

* elasticity: median absolute error of the per-category elasticity against the planted
  ``world.categories[*].elasticity`` of ground_truth.json, for the federated and the centralised
  model, over the categories that have an estimate; plus every category's estimate, 95% interval,
  truth and whether the interval covers the truth. Target: median abs error <= 0.15.
* WAPE: federated / centralised, pooled over retailers (each retailer's holdout WAPE weighted by
  its holdout examples) and per retailer. Target: <= 1.10.
* small retailers: for the three smallest retailers (by imported rows), federated / local-only
  holdout WAPE. Target: <= 0.85 for each.
* the settings used, per-round records, wall time and the machine's load average.

    python tests/benchmarks/quality.py [--rounds 3] [--local-epochs 1] [--batch-size 256]
        [--learning-rate 0.05] [--max-grad-norm 1.0] [--epsilon 3] [--data DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RETAILERS = 8
SEED = 7
DELTA = 1e-5
EPSILON_TOTAL = 3.0
SMALL_RETAILERS = 3
TARGET_ELASTICITY_MAE = 0.15
TARGET_FEDERATED_VS_CENTRAL = 1.10
TARGET_SMALL_FEDERATED_VS_LOCAL = 0.85


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or a != a or b != b:  # None or NaN
        return None
    return a / b


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _weighted_wape(retailers: list[dict[str, Any]], key: str) -> float:
    weights = sum(r["holdout_examples"] for r in retailers)
    return sum(r[key] * r["holdout_examples"] for r in retailers) / max(weights, 1)


def ensure_demo(folder: Path, retailers: int, seed: int) -> Path:
    """Generate the demo federation into ``folder`` unless it already holds this one."""
    from shared.synthetic import GROUND_TRUTH_FILE, generate_demo

    truth = folder / GROUND_TRUTH_FILE
    if truth.exists():
        stored = json.loads(truth.read_text("utf-8"))
        if stored.get("seed") == seed and len(stored.get("retailers", [])) == retailers:
            return truth
    generate_demo(folder, retailers=retailers, seed=seed)
    return truth


def elasticity_section(
    categories: dict[str, dict[str, Any]], planted: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    per_category: dict[str, Any] = {}
    errors: dict[str, list[float]] = {"federated": [], "centralised": []}
    covered: dict[str, int] = {"federated": 0, "centralised": 0}
    for code, models in sorted(categories.items()):
        truth = planted.get(code, {}).get("elasticity")
        entry: dict[str, Any] = {"truth": truth}
        for name in ("federated", "centralised"):
            ci = models.get(name)
            if ci is None or truth is None:
                entry[name] = None
                continue
            error = abs(ci["estimate"] - truth)
            inside = ci["low"] <= truth <= ci["high"]
            errors[name].append(error)
            covered[name] += int(inside)
            entry[name] = {
                "estimate": round(ci["estimate"], 4),
                "interval": [round(ci["low"], 4), round(ci["high"], 4)],
                "abs_error": round(error, 4),
                "covers_truth": inside,
            }
        per_category[code] = entry
    summary: dict[str, Any] = {}
    for name, values in errors.items():
        summary[name] = {
            "categories": len(values),
            "median_abs_error": _round(statistics.median(values)) if values else None,
            "mean_abs_error": _round(statistics.fmean(values)) if values else None,
            "interval_coverage": _round(covered[name] / len(values)) if values else None,
            "meets_target": bool(values) and statistics.median(values) <= TARGET_ELASTICITY_MAE,
        }
    return {"target_median_abs_error": TARGET_ELASTICITY_MAE, **summary,
            "per_category": per_category}  # fmt: skip


def wape_section(retailers: list[dict[str, Any]]) -> dict[str, Any]:
    pooled = {
        model: _weighted_wape(retailers, f"wape_{model}")
        for model in ("local_only", "federated", "centralised")
    }
    ratio = _ratio(pooled["federated"], pooled["centralised"])
    per_retailer = {
        r["retailer"]: {
            "rows": r["rows"],
            "holdout_examples": r["holdout_examples"],
            "wape_local_only": _round(r["wape_local_only"]),
            "wape_federated": _round(r["wape_federated"]),
            "wape_centralised": _round(r["wape_centralised"]),
            "federated_vs_centralised": _round(_ratio(r["wape_federated"], r["wape_centralised"])),
            "federated_vs_local_only": _round(_ratio(r["wape_federated"], r["wape_local_only"])),
            "noise_multiplier": _round(r["noise_multiplier"]),
            "local_steps": r["local_steps"],
            "epsilon_spent": _round(r["epsilon_spent"]),
        }
        for r in retailers
    }
    smallest = sorted(retailers, key=lambda r: r["rows"])[:SMALL_RETAILERS]
    small = {
        r["retailer"]: _round(_ratio(r["wape_federated"], r["wape_local_only"])) for r in smallest
    }
    return {
        "pooled_wape": {k: _round(v) for k, v in pooled.items()},
        "federated_vs_centralised": {
            "pooled": _round(ratio),
            "target": TARGET_FEDERATED_VS_CENTRAL,
            "meets_target": ratio is not None and ratio <= TARGET_FEDERATED_VS_CENTRAL,
        },
        "small_retailers_federated_vs_local_only": {
            "retailers": small,
            "worst": max((v for v in small.values() if v is not None), default=None),
            "target": TARGET_SMALL_FEDERATED_VS_LOCAL,
            "meets_target": all(
                v is not None and v <= TARGET_SMALL_FEDERATED_VS_LOCAL for v in small.values()
            ),
        },
        "per_retailer": per_retailer,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from shared.federation.settings import RunSettings
    from shared.federation.study import run_study

    settings = RunSettings(
        rounds=args.rounds,
        epsilon_per_round=args.epsilon / args.rounds,
        delta=DELTA,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_grad_norm=args.max_grad_norm,
    )
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as tmp:
        folder = Path(args.data) if args.data else Path(tmp) / "demo"
        truth_path = ensure_demo(folder, args.retailers, args.seed)
        planted = json.loads(truth_path.read_text("utf-8"))["world"]["categories"]
        started = time.monotonic()
        report = run_study(folder, settings)
        wall = time.monotonic() - started
    study = report.to_json()
    return {
        "benchmark": "quality",
        "data": {"generator": "generate_demo", "retailers": args.retailers, "seed": args.seed},
        "settings": study["settings"],
        "epsilon_total": round(study["epsilon_total"], 6),
        "delta": settings.delta,
        "wall_seconds": round(wall, 1),
        "study_wall_seconds": study["wall_seconds"],
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "elasticity": elasticity_section(study["categories"], planted),
        "wape": wape_section(study["retailers"]),
        "rounds": study["rounds"],
        "skipped_partitions": study["skipped_partitions"],
    }


def main(argv: list[str] | None = None) -> None:
    from shared.federation.settings import RunSettings

    defaults = RunSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--local-epochs", type=int, default=defaults.local_epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm)
    parser.add_argument(
        "--epsilon",
        type=float,
        default=EPSILON_TOTAL,
        help="epsilon for the whole campaign (split evenly over rounds)",
    )
    parser.add_argument("--retailers", type=int, default=RETAILERS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data", help="reuse (or generate once into) this demo folder")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", "utf-8")
    print(text)


if __name__ == "__main__":
    main()
