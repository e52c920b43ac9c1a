"""Benchmark: a SecAgg+ round with 5 nodes joined through ``retail-node join``.

Real processes on loopback: a served coordinator (SuperLink with TLS and SuperNode
authentication) and five nodes, each a supervised SuperNode plus the trusted runner, running a
campaign of ``--rounds`` DP-SGD rounds (demand only, no basket statistics). Prints JSON: mean and
max wall time of a round (participation query to the last evaluation reply, as recorded by the
ServerApp) and the peak RSS of the SuperNode and the ClientApp runner processes.

    python tests/benchmarks/node_round.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from federation import run  # the federation benchmark's machinery


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="node-round-bench-") as tmp:
        result = run(5, args.rounds, Path(tmp), tasks=("demand_pricing",))
    training = [r for r in result["per_round"] if r["stage"] != "statistics"]
    print(
        json.dumps(
            {
                "benchmark": "node_round",
                "nodes": 5,
                "rounds": args.rounds,
                "round_wall_s": [r["wall_s"] for r in training],
                "mean_round_s": result["mean_secagg_round_s"],
                "max_round_s": result["max_secagg_round_s"],
                "training_s": [r["training_s"] for r in training],
                "peak_rss_mb": {
                    k: v
                    for k, v in result["peak_rss_mb"].items()
                    if k in ("supernode", "clientapp_runner")
                },
                "target_round_s": 20,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
