"""The validation report: every problem found in a retailer's file, said so a shop owner can act.

Validation never raises on user data; it fills one of these instead. Detailed issues are capped
per (kind, column) so a million bad rows do not make a million-line report, but counts stay exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"  # blocks the import until fixed
    WARNING = "warning"  # imported; the retailer should know


class IssueKind(StrEnum):
    UNREADABLE = "unreadable"
    MALFORMED_ROW = "malformed_row"
    MISSING_COLUMN = "missing_column"
    DUPLICATE_HEADER = "duplicate_header"
    AMBIGUOUS_DATES = "ambiguous_dates"
    UNPARSEABLE = "unparseable"
    MISSING_VALUE = "missing_value"
    OUT_OF_RANGE = "out_of_range"
    NON_POSITIVE_PRICE = "non_positive_price"
    RETURN = "return"
    DUPLICATE_ROW = "duplicate_row"
    OUTLIER = "outlier"
    FUTURE_DATE = "future_date"
    TIME_GAP = "time_gap"
    UNMAPPED_CATEGORY = "unmapped_category"
    TASK_NOT_READY = "task_not_ready"
    EMPTY = "empty"


@dataclass(frozen=True)
class Issue:
    """One finding. ``row`` is the spreadsheet row number (header = row 1), None for file-level."""

    severity: Severity
    kind: IssueKind
    message: str
    row: int | None = None
    column: str | None = None
    value: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "kind": self.kind.value,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "message": self.message,
        }


@dataclass
class TaskReadiness:
    ready: bool
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "missing": list(self.missing)}


@dataclass
class ValidationReport:
    """Everything learned about one source file; serialisable for ``--json`` and the app."""

    source: str
    readable: bool = True
    source_format: str = ""
    encoding: str | None = None
    delimiter: str | None = None
    row_count: int = 0
    imported_rows: int = 0
    mapping: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, TaskReadiness] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    counts: Counter[tuple[Severity, IssueKind]] = field(default_factory=Counter)
    max_detailed: int = 1000
    _detailed_per_key: Counter[tuple[IssueKind, str | None]] = field(default_factory=Counter)

    def add(self, issue: Issue, *, count: int = 1) -> None:
        """Record ``count`` occurrences, keeping the detail only up to the per-kind cap."""
        self.counts[(issue.severity, issue.kind)] += count
        key = (issue.kind, issue.column)
        if self._detailed_per_key[key] < self.max_detailed:
            self._detailed_per_key[key] += 1
            self.issues.append(issue)

    def add_many(self, issues: list[Issue], total: int) -> None:
        """Record ``total`` occurrences of which ``issues`` are the first few, all of one kind."""
        if not issues:
            return
        for issue in issues:
            self.add(issue)
        first = issues[0]
        self.counts[(first.severity, first.kind)] += total - len(issues)

    def error(self, kind: IssueKind, message: str, **where: Any) -> None:
        self.add(Issue(Severity.ERROR, kind, message, **where))

    def warning(self, kind: IssueKind, message: str, **where: Any) -> None:
        self.add(Issue(Severity.WARNING, kind, message, **where))

    @property
    def error_count(self) -> int:
        return sum(n for (sev, _), n in self.counts.items() if sev is Severity.ERROR)

    @property
    def warning_count(self) -> int:
        return sum(n for (sev, _), n in self.counts.items() if sev is Severity.WARNING)

    @property
    def valid(self) -> bool:
        return self.readable and self.error_count == 0

    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity is Severity.ERROR]

    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity is Severity.WARNING]

    def counts_by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {"error": {}, "warning": {}}
        for (severity, kind), n in sorted(self.counts.items()):
            out[severity.value][kind.value] = n
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "valid": self.valid,
            "readable": self.readable,
            "format": self.source_format,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "row_count": self.row_count,
            "imported_rows": self.imported_rows,
            "mapping": dict(self.mapping),
            "tasks": {name: t.to_json() for name, t in self.tasks.items()},
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "counts": self.counts_by_kind(),
            "errors": [i.to_json() for i in self.errors()],
            "warnings": [i.to_json() for i in self.warnings()],
        }
