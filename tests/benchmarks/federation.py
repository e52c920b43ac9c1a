"""Benchmark: the demo federation on real processes, and how its cost grows with participants.

Runs ``retail-coordinator demo`` (in-process orchestration, real child processes) with 5 and
then 10 retailers and prints one JSON object: the wall time split into start-up, per-round
training, secure aggregation (the rest of each round: SecAgg+ stages, messaging, evaluation)
and insight computation; the mean wall time of one SecAgg+ round; and the peak RSS of the
SuperLink, a SuperNode and a ClientApp (trusted runner) process, sampled from /proc.

    python tests/benchmarks/federation.py [--retailers 5 10] [--rounds 3] [--keep DIR]

A run that fails is reported with its error (the other runs still go); ``--keep DIR`` keeps each
run's work dir (logs, node event streams, the coordinator's database) for a look afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from coordinator.demo import DemoOptions, interrupt_on_signals, run_demo
from coordinator.demo.children import processes_under
from coordinator.demo.steps import DEMO_TASKS, DemoError
from shared.node_runtime.events import EventKind, read_events


def _kind(args: list[str]) -> str | None:
    joined = " ".join(args[:6])
    if "flower-superlink" in joined:
        return "superlink"
    if "supernode" in joined and "shared.node_runtime.launch" in joined:
        return "supernode"
    if "shared.node_runtime.flower_runner" in joined:
        return "clientapp_runner"
    if "flwr-serverapp" in joined:
        return "serverapp"
    return None


class PeakRss:
    """Samples every process of the work dir twice a second; keeps the peak VmHWM per kind."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.peak_mb: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pid in processes_under(self.workdir):
                try:
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                kind = _kind(args)
                hwm = next((ln for ln in status.splitlines() if ln.startswith("VmHWM:")), None)
                if kind and hwm:
                    mb = int(hwm.split()[1]) / 1024
                    self.peak_mb[kind] = round(max(self.peak_mb.get(kind, 0.0), mb), 1)


def _round_walls(campaign_started: float, rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    walls = []
    previous = campaign_started
    for row in rounds:
        at = datetime.fromisoformat(row["recorded_at"]).timestamp()
        walls.append({"stage": row["stage"], "round": row["round"], "wall_s": at - previous})
        previous = at
    return walls


def _training_seconds(node_dirs: list[Path]) -> dict[int, float]:
    """Per round, the slowest node's local DP-SGD training time (the runner's own measure)."""
    slowest: dict[int, float] = {}
    for node_dir in node_dirs:
        for event in read_events(node_dir).events:
            if event.kind == EventKind.TRAINED and event.round is not None:
                seconds = float(event.data.get("seconds", 0.0))  # type: ignore[arg-type]
                key = 0 if event.data.get("stage") == "statistics" else event.round
                slowest[key] = max(slowest.get(key, 0.0), seconds)
    return slowest


def run(
    retailers: int, rounds: int, root: Path, tasks: tuple[str, ...] = DEMO_TASKS
) -> dict[str, Any]:
    workdir = root / f"federation-{retailers}"
    with PeakRss(workdir) as rss:
        begin = time.monotonic()
        summary = run_demo(
            DemoOptions(workdir=workdir, retailers=retailers, rounds=rounds, tasks=tasks),
            lambda line: print(line, file=sys.stderr, flush=True),
        )
        total = time.monotonic() - begin
    data = summary.to_json()
    with_times = _round_records(summary.workdir, data["campaign"]["id"])
    started = datetime.fromisoformat(with_times["started_at"]).timestamp()
    walls = _round_walls(started, with_times["rounds"])
    training = _training_seconds([Path(n["node_dir"]) for n in data["nodes"]])
    per_round = []
    for wall in walls:
        key = 0 if wall["stage"] == "statistics" else wall["round"]
        train_s = training.get(key, 0.0)
        per_round.append(
            {
                **wall,
                "wall_s": round(wall["wall_s"], 2),
                "training_s": round(train_s, 2),
                "secure_aggregation_and_messaging_s": round(wall["wall_s"] - train_s, 2),
            }
        )
    training_rounds = [r["wall_s"] for r in per_round if r["stage"] != "statistics"]
    timings = data["timings_s"]
    return {
        "retailers": retailers,
        "rounds": rounds,
        "total_wall_s": round(total, 1),
        "startup_s": round(
            sum(timings.get(k, 0.0) for k in ("prepare", "coordinator_ready", "enroll", "join")), 1
        ),
        "campaign_s": timings.get("campaign"),
        "insights_s": timings.get("insights"),
        "stop_s": timings.get("stop"),
        "per_round": per_round,
        "mean_secagg_round_s": round(statistics.fmean(training_rounds), 2),
        "max_secagg_round_s": round(max(training_rounds), 2),
        "peak_rss_mb": rss.peak_mb,
        "participants": [r["participants"] for r in data["rounds"]],
    }


def _round_records(workdir: Path, campaign_id: int) -> dict[str, Any]:
    """The campaign's start and its rounds' record times, read from the coordinator's database
    (the demo has stopped the daemon)."""
    from coordinator.config import load
    from coordinator.runtime import Coordinator

    coord = Coordinator.open(load(workdir / "coordinator"))
    try:
        campaign = coord.campaigns.get(campaign_id)
        assert campaign is not None and campaign.started_at is not None
        rounds = [r.to_json() for r in coord.campaigns.rounds(campaign_id)]
        return {"started_at": campaign.started_at.isoformat(), "rounds": rounds}
    finally:
        coord.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--retailers", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the work dirs here (default: deleted)")
    args = parser.parse_args()
    interrupt_on_signals()  # Ctrl-C or SIGTERM: the running demo stops its processes first
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            root = args.keep
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="federation-")))
        results = []
        for retailers in args.retailers:
            try:
                results.append(run(retailers, args.rounds, root))
            except DemoError as exc:  # every process is already stopped; report and go on
                results.append({"retailers": retailers, "rounds": args.rounds, "error": str(exc)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # partial figures
    print(json.dumps({"benchmark": "federation", "runs": results}, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
