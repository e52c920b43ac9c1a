"""Import one export end to end: read, map, parse, validate, normalise. Never raises on user data.

This is the single entry point the CLI, the desktop app and the node runtime call. The source
file is only ever opened for reading; the canonical frame is written elsewhere, on request.
"""

from __future__ import annotations

import copy
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from shared.ingest.mapping import ColumnMapping, MappingStore, suggest_mapping
from shared.ingest.normalise import NormaliseOptions, build_canonical, text_columns
from shared.ingest.parsing import DateOrder
from shared.ingest.quality import check_quality, check_tasks
from shared.ingest.readers import RawTable, UnreadableSource, read_table
from shared.ingest.report import Issue, IssueKind, Severity, ValidationReport
from shared.schema import ValidationSettings
from shared.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportOptions:
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    date_order: DateOrder | None = None
    settings: ValidationSettings = field(default_factory=ValidationSettings)
    strict_tasks: bool = False
    # Key for hashing customer numbers. None: a random key for this import only, so hashes
    # join within the import but cannot be reversed by hashing every possible number.
    customer_key: bytes | None = None
    now: datetime | None = None


@dataclass
class ImportResult:
    report: ValidationReport
    mapping: ColumnMapping | None
    frame: pd.DataFrame | None
    headers: list[str] = field(default_factory=list)


def import_file(
    path: Path,
    mapping: ColumnMapping | None = None,
    options: ImportOptions | None = None,
    *,
    store: MappingStore | None = None,
    taxonomy: Taxonomy | None = None,
) -> ImportResult:
    """Mapping precedence: the one given, else the one saved for this layout, else a suggestion."""
    options = options or ImportOptions()
    mapping = copy.deepcopy(mapping)  # the caller's mapping is never changed; the result has ours
    report = ValidationReport(source=str(path), max_detailed=options.settings.max_detailed_issues)
    try:
        return _import(path, mapping, options, store, taxonomy or load_taxonomy(), report)
    except UnreadableSource as exc:
        report.readable = False
        report.error(IssueKind.UNREADABLE, str(exc))
    except MemoryError:
        report.readable = False
        report.error(
            IssueKind.UNREADABLE,
            f"{path}: the file is too large for this computer's memory. Split it by period "
            "and import the parts.",
        )
    except Exception as exc:  # a bug must not reach the user as a traceback
        log.exception("import of %s failed unexpectedly", path)
        report.readable = False
        report.error(
            IssueKind.UNREADABLE,
            f"{path}: the file could not be imported ({type(exc).__name__}: {exc}). "
            "Please send this message and the file's first lines to support.",
        )
    return ImportResult(report=report, mapping=mapping, frame=None)


def _import(
    path: Path,
    mapping: ColumnMapping | None,
    options: ImportOptions,
    store: MappingStore | None,
    taxonomy: Taxonomy,
    report: ValidationReport,
) -> ImportResult:
    peek = read_table(
        path,
        encoding=options.encoding,
        delimiter=options.delimiter,
        sheet=options.sheet,
        sample_only=True,
    )
    if mapping is None and store is not None:
        mapping = store.load(peek.headers)
    if mapping is None:
        mapping = suggest_mapping(peek.table).to_mapping()
    mapping.taxonomy_version = taxonomy.version
    headers = list(peek.headers)  # the file's own layout; parsing drops columns as it goes
    wanted = set(mapping.columns.values())
    # A sample that already holds the whole file (small CSVs, every .xlsx) is not read twice.
    raw = (
        peek
        if peek.complete
        else read_table(
            path,
            encoding=options.encoding,  # a guess from the head is re-checked by the full read
            delimiter=peek.delimiter,
            sheet=options.sheet,
            # All columns when the mapping names one the file lacks: the error lists the real ones.
            columns=[c for c in peek.headers if c in wanted]
            if wanted <= set(peek.headers)
            else None,
            text_columns=text_columns(peek, mapping),
        )
    )
    _describe_source(raw, report)
    report.mapping = dict(mapping.columns)
    if len(raw) == 0:
        report.error(IssueKind.EMPTY, f"{path}: the file has a header but no data rows.")
        return ImportResult(report, mapping, None, headers)
    frame = build_canonical(
        raw,
        mapping,
        taxonomy,
        report,
        NormaliseOptions(
            date_order=options.date_order,
            customer_key=options.customer_key or secrets.token_bytes(32),
        ),
    )
    report.mapping = dict(mapping.columns)
    del raw  # the text copy of the file is the largest thing in memory; drop it early
    if frame is not None:
        report.imported_rows = len(frame)
        if len(frame):
            now = options.now or datetime.now()
            check_quality(frame, report, mapping.columns, options.settings, now)
    check_tasks(frame, report, set(mapping.columns), options.settings, strict=options.strict_tasks)
    return ImportResult(report, mapping, frame, headers)


def _describe_source(raw: RawTable, report: ValidationReport) -> None:
    report.source_format = raw.source_format
    report.encoding = raw.encoding
    report.delimiter = raw.delimiter
    report.row_count = len(raw) + len(raw.malformed_rows)
    for new, old in raw.header_renames.items():
        report.warning(
            IssueKind.DUPLICATE_HEADER,
            f"Two columns are called '{old}'; the second is read as '{new}'.",
            column=new,
        )
    for bad in raw.malformed_rows[: report.max_detailed]:
        report.add(
            Issue(
                Severity.ERROR,
                IssueKind.MALFORMED_ROW,
                f"This line has {bad.actual_fields} fields but the header has "
                f"{bad.expected_fields}. Check for an extra or missing separator or an "
                "unclosed quote.",
                row=bad.row,
                value=bad.text[:200],
            )
        )
    extra = len(raw.malformed_rows) - report.max_detailed
    if extra > 0:
        report.counts[(Severity.ERROR, IssueKind.MALFORMED_ROW)] += extra


def write_canonical(frame: pd.DataFrame, destination: Path) -> Path:
    """Write the canonical frame as Parquet next to, never over, the source."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_suffix(destination.suffix + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(destination)
    return destination
