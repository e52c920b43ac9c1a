"""Data portability: everything this node holds about the shop, in open formats, in one zip.

Why a zip of CSV and JSON: the owner can open every file with a spreadsheet or a text editor,
or hand it to another service, without this app. The zip is written under a temporary name and
renamed, so a cancelled or failed export never leaves a half-written archive behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from desktop_client.viewmodels.data_files import CANONICAL_FILE, LEDGER_FILENAME, NODE_FILE
from desktop_client.viewmodels.privacy_budget import CONSENT_HISTORY_FILE, PrivacyViewModel
from shared.node_runtime.events import read_events

Progress = Callable[[int, str], None]

README = """\
Your data from the Retail Intelligence app, exported {when}.

ledger/budget.json        your privacy budget: cap, spent, remaining (epsilon, at delta)
ledger/releases.csv       every contribution that left (or was reserved to leave) this computer:
                          what task, how much noise, and the epsilon spent after it
consent/current.csv       your consent per task now, with when it was given or withdrawn
consent/history.jsonl     every consent change made in the app, one JSON object a line
data/canonical.csv        your sales as the app prepared them (customer numbers are hashed)
data/node.json            this node's name
events/events.jsonl       what the node did (rounds joined or declined, models received)
insights/<kind>.json      every stored batch of insights, with model version and date
mappings/*.json           the column mappings you saved
"""


def _noop(percent: int, text: str) -> None:
    """Default progress callback."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    files: tuple[str, ...]  # names inside the zip


def export_my_data(node_dir: Path, destination: Path, *, progress: Progress = _noop) -> Path:
    """Write the portability zip to ``destination`` (replaced atomically); returns it."""
    return export_with_listing(node_dir, destination, progress=progress).path


def export_with_listing(
    node_dir: Path, destination: Path, *, progress: Progress = _noop
) -> ExportResult:
    node_dir = Path(node_dir)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".export-", suffix=".zip", dir=destination.parent)
    tmp = Path(name)
    written: list[str] = []
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:

            def put(arcname: str, text: str) -> None:
                archive.writestr(arcname, text)
                written.append(arcname)

            put("README.txt", README.format(when=datetime.now(UTC).isoformat(timespec="seconds")))
            progress(10, "Privacy ledger")
            _ledger(node_dir, put)
            progress(30, "Consent")
            _consent(node_dir, put)
            progress(45, "Your sales data")
            _data(node_dir, put)
            progress(70, "Events")
            _events(node_dir, put)
            progress(80, "Insights")
            _insights(node_dir, put)
            for mapping in sorted((node_dir / "mappings").glob("*.json")):
                put(f"mappings/{mapping.name}", mapping.read_text("utf-8"))
        tmp.replace(destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    progress(100, "Exported")
    return ExportResult(destination, tuple(written))


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _ledger(node_dir: Path, put: Callable[[str, str], None]) -> None:
    if not (node_dir / LEDGER_FILENAME).exists():
        return
    from shared.privacy import PrivacyLedger

    with PrivacyLedger.in_data_dir(node_dir) as ledger:
        status = ledger.status()
    budget = {
        "client_id": status.client_id,
        "epsilon_cap": status.total_epsilon,
        "epsilon_spent": status.spent_epsilon,
        "epsilon_remaining": status.remaining_epsilon,
        "delta": status.delta,
        "last_updated": status.last_updated.isoformat(),
    }
    put("ledger/budget.json", json.dumps(budget, indent=2) + "\n")
    rows = [
        {
            "release_id": r.release_id,
            "kind": r.kind.value,
            "task": r.task.value,
            "state": r.state.value,
            "noise_multiplier": r.noise_multiplier,
            "sample_rate": r.sample_rate,
            "steps": r.steps,
            "epsilon_after": r.epsilon_after,
            "cumulative_epsilon": "" if r.cumulative_epsilon is None else r.cumulative_epsilon,
            "created_at": r.created_at.isoformat(),
            "updated_at": r.updated_at.isoformat(),
        }
        for r in status.releases
    ]
    columns = [
        "release_id",
        "kind",
        "task",
        "state",
        "noise_multiplier",
        "sample_rate",
        "steps",
        "epsilon_after",
        "cumulative_epsilon",
        "created_at",
        "updated_at",
    ]
    put("ledger/releases.csv", _csv(rows, columns))


def _consent(node_dir: Path, put: Callable[[str, str], None]) -> None:
    ledger_path = node_dir / LEDGER_FILENAME
    if ledger_path.exists():
        # Read-only: the ledger's consent rows carry the dates its API does not return.
        connection = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
        try:
            connection.row_factory = sqlite3.Row
            rows = [dict(row) for row in connection.execute("SELECT * FROM consent ORDER BY task")]
        finally:
            connection.close()
        for row in rows:
            row["granted"] = bool(row["granted"])
        columns = ["task", "granted", "granted_at", "withdrawn_at", "updated_at"]
        put("consent/current.csv", _csv(rows, columns))
    history = PrivacyViewModel(node_dir).consent_history()
    if history or (node_dir / CONSENT_HISTORY_FILE).exists():
        put("consent/history.jsonl", "".join(json.dumps(e) + "\n" for e in history))


def _data(node_dir: Path, put: Callable[[str, str], None]) -> None:
    canonical = node_dir / CANONICAL_FILE
    if canonical.is_file():
        import pandas as pd

        put("data/canonical.csv", pd.read_parquet(canonical).to_csv(index=False))
    if (node_dir / NODE_FILE).is_file():
        put("data/node.json", (node_dir / NODE_FILE).read_text("utf-8"))


def _events(node_dir: Path, put: Callable[[str, str], None]) -> None:
    events = read_events(node_dir).events
    if events:
        put("events/events.jsonl", "".join(event.to_json() + "\n" for event in events))


def _insights(node_dir: Path, put: Callable[[str, str], None]) -> None:
    from shared.insights.store import INSIGHTS_FILENAME, KINDS, InsightStore

    if not (node_dir / INSIGHTS_FILENAME).exists():
        return
    with InsightStore.in_data_dir(node_dir, create=False) as store:
        for kind in KINDS:
            batches = store.history(kind, limit=1000, with_rows=True)
            if batches:
                data = [batch.to_json() for batch in batches]
                put(f"insights/{kind}.json", json.dumps(data, indent=2, default=str) + "\n")
