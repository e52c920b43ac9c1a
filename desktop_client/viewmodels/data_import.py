"""The Data page's logic: open a sales export, map its columns, validate it, use it.

Why a plain-Python view-model: the page only shows what this object says, so every decision
(which mapping applies, what the summary says, what "Use this data" writes) is testable
without Qt. Parsing and validation are the ingest library's (``shared.ingest``); nothing here
reads a file by itself. :meth:`DataImportViewModel.analyse` and :meth:`use_data` are the heavy
steps: they change no state, take a :class:`CancelToken` and a progress callback, and are
meant to run off the GUI thread; :meth:`accept` takes their result on the GUI thread.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pandas as pd

from desktop_client.node_home import NodeHome
from desktop_client.viewmodels.data_files import CANONICAL_FILE, NODE_FILE
from shared.enrollment import load_enrollment
from shared.ingest import (
    ColumnMapping,
    ImportOptions,
    ImportResult,
    Issue,
    MappingFileError,
    Severity,
    import_file,
    suggest_mapping,
)
from shared.ingest.readers import UnreadableSource, read_table
from shared.schema import FIELD_NAMES, FIELDS_BY_NAME

Progress = Callable[[int, str], None]
BUSY = -1  # progress value for a step whose share of the work cannot be known


class ImportCancelled(Exception):
    """The owner pressed Cancel; whatever was being made is thrown away."""


class CancelToken:
    """A flag the GUI sets and the worker checks between steps (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise ImportCancelled()


class MappingOrigin(StrEnum):
    """Where the mapping shown came from, so the page can say so."""

    SAVED = "saved"  # saved earlier for this export layout, applied automatically
    SUGGESTED = "suggested"  # guessed from the headers and values
    EDITED = "edited"  # changed by the owner on the page


@dataclass(frozen=True)
class FieldRow:
    """One line of the mapping table: a canonical field and the file's column feeding it."""

    field: str
    description: str
    core: bool
    source: str | None
    confidence: float | None  # None unless suggested


@dataclass(frozen=True)
class Summary:
    """The line above the report: what was read, what was kept, what is wrong."""

    rows_read: int
    rows_kept: int
    errors: int
    warnings: int
    readable: bool
    valid: bool


@dataclass
class ImportOutcome:
    """Everything one analysis of a file found; built off the GUI thread, read on it."""

    path: Path
    headers: list[str]
    mapping: ColumnMapping | None
    origin: MappingOrigin
    confidences: dict[str, float] = field(default_factory=dict)
    result: ImportResult | None = None
    error: str | None = None  # the file could not be read at all (already names the file)


def _noop(percent: int, text: str) -> None:
    """Default progress callback: nobody is watching."""


class DataImportViewModel:
    """State of the Data page for one node directory."""

    def __init__(self, node_dir: Path) -> None:
        self.home = NodeHome(Path(node_dir))
        self.outcome: ImportOutcome | None = None

    # -- heavy steps (any thread) ---------------------------------------------------------

    def analyse(
        self,
        path: Path,
        mapping: ColumnMapping | None = None,
        *,
        progress: Progress = _noop,
        cancel: CancelToken | None = None,
    ) -> ImportOutcome:
        """Read, map and validate ``path``. Without ``mapping``: the one saved for this
        layout, else a suggestion. Never raises on user data; raises ImportCancelled."""
        cancel = cancel or CancelToken()
        path = Path(path)
        progress(5, "Reading the first rows")
        try:
            peek = read_table(path, sample_only=True)
        except UnreadableSource as exc:
            return ImportOutcome(path, [], None, MappingOrigin.SUGGESTED, error=str(exc))
        headers = list(peek.headers)
        cancel.check()
        origin = MappingOrigin.EDITED
        confidences: dict[str, float] = {}
        if mapping is None:
            mapping = self._saved_mapping(headers)
            origin = MappingOrigin.SAVED
        if mapping is None:
            suggestion = suggest_mapping(peek.table)
            mapping = suggestion.to_mapping()
            confidences = {s.field: s.confidence for s in suggestion.columns}
            origin = MappingOrigin.SUGGESTED
        del peek
        cancel.check()
        progress(BUSY, "Reading and checking every row")  # one library call: no percentage
        options = ImportOptions(customer_key=self.home.customer_key())
        result = import_file(path, mapping, options)
        cancel.check()
        progress(100, "Checked")
        return ImportOutcome(
            path,
            headers or list(result.headers),
            result.mapping or mapping,
            origin,
            confidences,
            result,
        )

    def _saved_mapping(self, headers: list[str]) -> ColumnMapping | None:
        try:
            return self.home.mappings.load(headers)
        except MappingFileError:
            return None  # a damaged saved mapping is ignored; a suggestion replaces it

    def use_data(self, *, progress: Progress = _noop, cancel: CancelToken | None = None) -> Path:
        """Prepare the node from the valid frame, as ``retail-node join --data`` does, without
        joining: the canonical frame, the node's name and its ledger. Files are written to a
        temporary name and renamed, so a cancel or a crash leaves the previous data whole."""
        cancel = cancel or CancelToken()
        frame = self.usable_frame()
        if frame is None:
            raise ValueError(self.problem() or "open a valid sales export first")
        root = self.home.root
        root.mkdir(parents=True, exist_ok=True)
        progress(10, "Writing your data for training")
        destination = root / CANONICAL_FILE
        tmp = destination.with_name(destination.name + ".tmp")
        try:
            frame.to_parquet(tmp, index=False)
            cancel.check()
            progress(80, "Recording this node")
            node_tmp = root / (NODE_FILE + ".tmp")
            node_tmp.write_text(json.dumps({"name": self.node_name()}), "utf-8")
            cancel.check()
            tmp.replace(destination)
            node_tmp.replace(root / NODE_FILE)
        finally:
            for leftover in (tmp, root / (NODE_FILE + ".tmp")):
                if leftover.exists():
                    leftover.unlink()
        from shared.privacy import PrivacyLedger  # loads torch: only ever on a worker thread

        PrivacyLedger.in_data_dir(root).close()  # consent is the Privacy page's decision
        progress(100, "Ready")
        return destination

    # -- GUI-thread state -----------------------------------------------------------------

    def accept(self, outcome: ImportOutcome) -> None:
        self.outcome = outcome

    def clear(self) -> None:
        self.outcome = None

    @property
    def headers(self) -> list[str]:
        return list(self.outcome.headers) if self.outcome else []

    @property
    def mapping(self) -> ColumnMapping | None:
        return self.outcome.mapping if self.outcome else None

    def field_rows(self) -> list[FieldRow]:
        """Every canonical field, with the column mapped to it (None: not in this file)."""
        columns = self.mapping.columns if self.mapping else {}
        confidences = self.outcome.confidences if self.outcome else {}
        return [
            FieldRow(
                name,
                FIELDS_BY_NAME[name].description,
                FIELDS_BY_NAME[name].core,
                columns.get(name),
                confidences.get(name) if name in columns else None,
            )
            for name in FIELD_NAMES
        ]

    def remapped(self, field_name: str, source: str | None) -> ColumnMapping:
        """The current mapping with ``field_name`` fed by ``source`` (None: unmapped).

        One column feeds one field: a column taken from another field leaves that one
        unmapped, as the owner would expect from moving it."""
        if field_name not in FIELDS_BY_NAME:
            raise ValueError(f"{field_name!r} is not a canonical field")
        if source is not None and source not in self.headers:
            raise ValueError(f"the file has no column {source!r}")
        mapping = copy.deepcopy(self.mapping) if self.mapping else ColumnMapping(columns={})
        columns = {k: v for k, v in mapping.columns.items() if k != field_name and v != source}
        if source is not None:
            columns[field_name] = source
        mapping.columns = {name: columns[name] for name in FIELD_NAMES if name in columns}
        return mapping

    def summary(self) -> Summary | None:
        result = self.outcome.result if self.outcome else None
        if self.outcome is None:
            return None
        if result is None:
            return Summary(0, 0, 1, 0, readable=False, valid=False)
        report = result.report
        return Summary(
            report.row_count,
            report.imported_rows,
            report.error_count,
            report.warning_count,
            report.readable,
            report.valid,
        )

    def issues(self) -> list[Issue]:
        result = self.outcome.result if self.outcome else None
        return list(result.report.issues) if result else []

    def preview_frame(self) -> pd.DataFrame | None:
        """The canonical frame as imported (shown even when it still has errors)."""
        result = self.outcome.result if self.outcome else None
        return result.frame if result is not None else None

    def usable_frame(self) -> pd.DataFrame | None:
        """The frame "Use this data" would write: only from a valid report."""
        result = self.outcome.result if self.outcome else None
        if result is None or not result.report.valid:
            return None
        return result.frame

    def problem(self) -> str | None:
        """Why this file cannot be used yet, naming the file, row and column, and what to do."""
        if self.outcome is None:
            return None
        if self.outcome.error:
            return self.outcome.error
        result = self.outcome.result
        if result is None:
            return None
        report = result.report
        errors = [i for i in report.issues if i.severity is Severity.ERROR]
        if report.valid and result.frame is not None:
            return None
        if not report.readable:
            return errors[0].message if errors else f"{self.outcome.path}: cannot be read."
        name = self.outcome.path.name
        first = errors[0] if errors else None
        where = ""
        if first is not None:
            parts = [f"row {first.row}" if first.row is not None else ""]
            parts.append(f"column '{first.column}'" if first.column else "")
            where = ", ".join(p for p in parts if p)
            where = f" First: {where + ': ' if where else ''}{first.message}"
        return (
            f"{name} has {report.error_count} problem(s) to fix before it can be used.{where} "
            "Fix the file and open it again, or change the column mapping."
        )

    def save_mapping(self) -> Path:
        """Remember the mapping for this export layout; applied when it is opened again."""
        if self.outcome is None or self.mapping is None or not self.outcome.headers:
            raise ValueError("open a sales export first")
        path = self.home.mappings.save(self.outcome.headers, self.mapping)
        self.outcome.origin = MappingOrigin.SAVED
        return path

    def node_name(self) -> str:
        enrollment = load_enrollment(self.home.root)
        return enrollment.retailer_name if enrollment is not None else self.home.root.name


@dataclass(frozen=True)
class PreparedData:
    """What the node trains on now (from an earlier "Use this data")."""

    path: Path
    rows: int
    name: str | None


def prepared_data(node_dir: Path) -> PreparedData | None:
    """The node's current canonical frame, read from the Parquet footer only (cheap)."""
    path = Path(node_dir) / CANONICAL_FILE
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError):
        return None
    try:
        name = str(json.loads((Path(node_dir) / NODE_FILE).read_text("utf-8"))["name"])
    except (OSError, ValueError, KeyError, TypeError):
        name = None
    return PreparedData(path, int(rows), name)
