"""What-if study: a federated campaign in the simulation engine over real retailer files.

Each file in a folder becomes one retailer node (imported with the same importer the app uses,
with a chronological holdout of the last 20% of its time span). The report puts the federated
model beside the two yardsticks on every retailer's holdout: a model trained on that retailer's
data alone, and a centralised model trained non-privately on everyone's rows pooled (the study
has all files locally; production never pools rows).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from shared.federation.node import prepare_node
from shared.federation.settings import RunSettings
from shared.federation.simulation import run_federation
from shared.ingest import ColumnMapping, ImportOptions, import_file
from shared.privacy import PrivacyLedger
from shared.schema import Task

DATA_SUFFIXES = {".csv", ".tsv", ".txt", ".xlsx", ".parquet"}
BASELINE_NEWTON_STEPS = 30


class StudyError(Exception):
    """The study cannot run (too few usable partitions, nothing to read); says what to do."""


@dataclass
class StudyReport:
    settings: RunSettings
    retailers: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    market: dict[str, Any] | None = None
    wall_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_run_config(),
            "epsilon_total": self.settings.epsilon_per_round * self.settings.rounds,
            "wall_seconds": round(self.wall_seconds, 2),
            "retailers": self.retailers,
            "categories": self.categories,
            "rounds": self.rounds,
            "skipped_partitions": self.skipped,
            "market": self.market,
        }


def partition_files(folder: Path) -> list[Path]:
    """Sales exports in a folder (recursively), e.g. ``retail-node generate-demo`` output."""
    if not folder.is_dir():
        raise StudyError(f"{folder}: not a folder. Give a folder with one file per retailer.")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise StudyError(f"{folder}: no .csv, .tsv, .txt, .xlsx or .parquet files found.")
    return files


def run_study(
    folder: Path,
    settings: RunSettings,
    *,
    mapping: ColumnMapping | None = None,
    work_dir: Path | None = None,
    verbose: bool = False,
    insights: bool = True,
) -> StudyReport:
    started = time.monotonic()
    report = StudyReport(settings=settings)
    own_work_dir = work_dir is None
    work = work_dir or Path(tempfile.mkdtemp(prefix="retail-study-"))
    try:
        node_dirs, names = _prepare_nodes(folder, settings, mapping, work, report)
        if not settings.trend_end and node_dirs:
            # A study over past exports: trends end where the newest export ends.
            settings = replace(settings, trend_end=_last_day(node_dirs))
            report.settings = settings
        if len(node_dirs) < settings.min_participants:
            raise StudyError(
                f"only {len(node_dirs)} usable partitions; secure aggregation needs at least "
                f"{settings.min_participants}. Fix or add files (see skipped_partitions)."
            )
        records, final = run_federation(node_dirs, settings, verbose=verbose)
        report.market = _market_summary(node_dirs)
        report.rounds = [
            {
                "round": r.round,
                "stage": r.stage,
                "attempt": r.attempt,
                "status": r.status,
                "participants": r.participants,
                "declined": r.declined,
                "loss": r.loss,
                "wape": r.wape,
                "seconds": round(r.seconds, 2),
            }
            for r in records
        ]
        _compare_models(node_dirs, names, final, report)
        if insights:
            _compute_insights(node_dirs, report)
    finally:
        if own_work_dir:
            shutil.rmtree(work, ignore_errors=True)
    report.wall_seconds = time.monotonic() - started
    return report


def _prepare_nodes(
    folder: Path,
    settings: RunSettings,
    mapping: ColumnMapping | None,
    work: Path,
    report: StudyReport,
) -> tuple[list[Path], list[str]]:
    node_dirs: list[Path] = []
    names: list[str] = []
    for index, path in enumerate(partition_files(folder)):
        result = import_file(path, mapping, ImportOptions(customer_key=b"what-if-study-key-" * 2))
        if result.frame is None or not result.report.valid:
            first = result.report.errors()[:1]
            report.skipped.append(
                {"file": str(path), "reason": first[0].message if first else "invalid data"}
            )
            continue
        name = f"{index + 1:02d}-{path.parent.name if path.parent != folder else path.stem}"
        node_dir = work / "nodes" / name
        consent: tuple[Task, ...] = (Task(settings.task),)
        if settings.statistics_epsilon > 0:
            consent += (Task.BUNDLES,)
        prepare_node(node_dir, result.frame, name, consent)
        node_dirs.append(node_dir)
        names.append(str(path))
    return node_dirs, names


def _compare_models(
    node_dirs: list[Path], files: list[str], final: list[np.ndarray], report: StudyReport
) -> None:
    """Every retailer's holdout error under local-only, federated and centralised models."""
    from shared.federation.node import NodeRuntime
    from shared.model import (
        DemandModel,
        elasticity_intervals,
        evaluate,
        fit_offsets,
        personalised,
        pool,
        train_centralised,
        train_local_only,
    )

    runtimes = [NodeRuntime(d) for d in node_dirs]
    trains = [r.train_data for r in runtimes]
    central, pooled = train_centralised(trains, epochs=BASELINE_NEWTON_STEPS)
    offsets = central.local_parameters()[0]
    start = 0
    for runtime, file in zip(runtimes, files, strict=True):
        train, holdout = runtime.train_data, runtime.holdout
        local = train_local_only(train, epochs=BASELINE_NEWTON_STEPS)
        federated = DemandModel(train.product_ids, node=train.node)
        federated.set_federated_parameters(final)
        federated = personalised(federated, train)
        centralised = DemandModel(train.product_ids, node=train.node)
        centralised.set_federated_parameters(central.federated_parameters())
        centralised.set_local_parameters([offsets[start : start + train.n_products]])
        start += train.n_products
        ledger = PrivacyLedger.in_data_dir(runtime.node_dir)
        budget = ledger.status()
        released = [r for r in budget.releases if r.task == Task(report.settings.task)]
        last = released[-1] if released else None
        report.retailers.append(
            {
                "retailer": runtime.name,
                "file": file,
                "rows": int(_rows(runtime.node_dir)),
                "train_examples": len(train),
                "holdout_examples": len(holdout),
                "epsilon_spent": budget.spent_epsilon,
                "delta": budget.delta,
                "rounds_joined": len(released),
                "noise_multiplier": last.noise_multiplier if last else None,
                "sample_rate": last.sample_rate if last else None,
                "local_steps": last.steps if last else None,
                "wape_local_only": evaluate(local, holdout)["wape"],
                "wape_federated": evaluate(federated, holdout)["wape"],
                "wape_centralised": evaluate(centralised, holdout)["wape"],
            }
        )
    global_model = DemandModel(pooled.product_ids, node=pooled.node)
    global_model.set_federated_parameters(final)
    fit_offsets(global_model, pooled)
    federated_ci = elasticity_intervals(global_model, pooled)
    central_ci = elasticity_intervals(central, pool(trains))
    for code in sorted(set(federated_ci) | set(central_ci)):
        report.categories[code] = {
            name: (
                {"estimate": ci.estimate, "low": ci.low, "high": ci.high}
                if (ci := intervals.get(code)) is not None
                else None
            )
            for name, intervals in (("federated", federated_ci), ("centralised", central_ci))
        }


REPORT_FILE = "insights-report.html"


def _compute_insights(node_dirs: list[Path], report: StudyReport) -> None:
    """Each node computes and stores its own insights, as ``retail-node insights refresh`` does,
    and writes its offline HTML report into its directory."""
    from shared.insights.engine import refresh_insights
    from shared.insights.html_report import write_report
    from shared.insights.store import InsightStore

    for node_dir, retailer in zip(node_dirs, report.retailers, strict=True):
        batches = {batch.kind: batch for batch in refresh_insights(node_dir)}
        with InsightStore.in_data_dir(node_dir) as store:
            path = write_report(store, node_dir / REPORT_FILE)
        value = batches["value"].rows[0] if batches["value"].rows else {}
        retailer["insights"] = {kind: len(batch.rows) for kind, batch in sorted(batches.items())}
        retailer["collaboration"] = value.get("message")
        retailer["report"] = str(path)


def _market_summary(node_dirs: list[Path]) -> dict[str, Any] | None:
    """What the nodes received from the statistics round (the same file on every node)."""
    from shared.federation.node import MARKET_FILE
    from shared.insights.market import MarketStatistics, market_summary

    for node_dir in node_dirs:
        path = node_dir / MARKET_FILE
        if path.exists():
            return market_summary(MarketStatistics.from_json(path.read_text("utf-8")))
    return None


def _last_day(node_dirs: list[Path]) -> str:
    import pyarrow.parquet as pq

    from shared.federation.node import CANONICAL_FILE

    last = max(
        pq.read_table(d / CANONICAL_FILE, columns=["timestamp"]).column(0).to_pandas().max()
        for d in node_dirs
    )
    return str(last.date().isoformat())


def _rows(node_dir: Path) -> int:
    import pyarrow.parquet as pq

    from shared.federation.node import CANONICAL_FILE

    return int(pq.ParquetFile(node_dir / CANONICAL_FILE).metadata.num_rows)
