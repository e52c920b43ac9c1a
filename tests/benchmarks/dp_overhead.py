"""DP-SGD overhead benchmark: one epoch of ``train_private`` against the same loop without privacy.

Data: the default synthetic federation (``generate_demo``, 8 retailers, seed 7), each export
imported and turned into product-day examples; the benchmark trains on the LARGEST retailer's
examples (DP-SGD runs per node on that node's own rows, so pooling shops would not be a real
workload; the largest shop is the worst case). Both loops use the same model, Adam optimiser,
learning rate and Poisson sampling at the same rate (expected batch ``--batch``); the only
difference is per-sample gradients, clipping and noise. Each mode runs in its own child process
(so neither inherits the other's memory), warms up with one untimed epoch, then times
``--repeat`` epochs and reports the median. Peak RSS is the child's VmHWM from
/proc/self/status. Prints JSON; the target (DP epoch <= 2x the plain epoch) is not asserted.

    python tests/benchmarks/dp_overhead.py [--batch 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

NOISE_MULTIPLIER = 1.0
MAX_GRAD_NORM = 1.0
LR = 0.05


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0  # reported in kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def prepare(out_dir: Path) -> dict[str, object]:
    """Generate the demo federation, build every retailer's examples, save the largest's."""
    from shared.ingest import import_file
    from shared.model import build_examples
    from shared.synthetic import generate_demo

    manifest = generate_demo(out_dir / "demo", 8, 7)
    sizes = {}
    best = None
    for entry in manifest.retailers:
        data = build_examples(import_file(entry.path).frame, entry.retailer_id)
        sizes[entry.retailer_id] = len(data)
        if best is None or len(data) > len(best):
            best = data
    assert best is not None
    torch.save(
        {
            "node": best.node,
            "product_ids": best.product_ids,
            "categories": best.categories,
            "tensors": best.tensors(),
            "dates": best.dates,
            "reference_price": best.reference_price,
        },
        out_dir / "examples.pt",
    )
    return {
        "retailer": best.node,
        "examples": len(best),
        "products": best.n_products,
        "examples_per_retailer": sizes,
    }


def plain_epochs(model, data, *, sample_rate: float, epochs: int, lr: float) -> int:  # type: ignore[no-untyped-def]
    """``train_private``'s minibatch loop without privacy: same Poisson batches, loss, optimiser."""
    from shared.model.training import train_minibatch

    return int(train_minibatch(model, data, sample_rate=sample_rate, epochs=epochs, lr=lr))


def child(mode: str, path: Path, batch: int, repeat: int) -> dict[str, object]:
    import warnings

    from shared.model import DemandData, DemandModel, train_private

    warnings.filterwarnings("ignore")
    saved = torch.load(path, weights_only=False)
    data = DemandData(
        saved["node"],
        saved["product_ids"],
        saved["categories"],
        *saved["tensors"],
        saved["dates"],
        saved["reference_price"],
    )
    sample_rate = batch / len(data)
    rss_before = _status_mb("VmRSS")

    def one_epoch() -> int:
        model = DemandModel(data.product_ids, node=data.node, categories=data.categories)
        if mode == "private":
            return train_private(
                model,
                data,
                noise_multiplier=NOISE_MULTIPLIER,
                max_grad_norm=MAX_GRAD_NORM,
                sample_rate=sample_rate,
                epochs=1,
                lr=LR,
            ).steps
        return plain_epochs(model, data, sample_rate=sample_rate, epochs=1, lr=LR)

    one_epoch()  # warm-up
    times = []
    steps = 0
    for _ in range(repeat):
        start = time.perf_counter()
        steps = one_epoch()
        times.append(time.perf_counter() - start)
    return {
        "seconds_per_epoch": statistics.median(times),
        "seconds_all": [round(t, 4) for t in times],
        "steps_per_epoch": steps,
        "peak_rss_mb": round(_status_mb("VmHWM"), 1),
        "rss_before_training_mb": round(rss_before, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="expected Poisson batch size")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per mode")
    parser.add_argument("--child", choices=["private", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.batch, args.repeat)))
        return

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        info = prepare(Path(tmp))
        results = {}
        for mode in ("private", "plain"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--data",
                    str(Path(tmp) / "examples.pt"),
                    "--batch",
                    str(args.batch),
                    "--repeat",
                    str(args.repeat),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    private, plain = results["private"], results["plain"]
    report = {
        "data": info,
        "data_choice": "largest retailer (DP-SGD runs per node on its own rows)",
        "expected_batch": args.batch,
        "sample_rate": args.batch / int(info["examples"]),  # type: ignore[call-overload]
        "noise_multiplier": NOISE_MULTIPLIER,
        "max_grad_norm": MAX_GRAD_NORM,
        "private": private,
        "plain": plain,
        "ratio_private_to_plain": round(
            float(private["seconds_per_epoch"]) / float(plain["seconds_per_epoch"]), 3
        ),
        "target_ratio": 2.0,
        "benchmark_seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
