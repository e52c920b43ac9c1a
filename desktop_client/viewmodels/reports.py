"""The Reports page's logic: export the stored insights as PDF, HTML or CSV.

Why here and not in the page: the destination rules (a missing suffix is added, a folder is
refused), the wording of success and failure, and which batch goes into which file are the
same whether a person clicks a button or a test calls ``export``. Every export reads only the
local insight store (view-only mode works offline) and writes atomically (a temporary file
renamed over the target), so a failed export never leaves half a file for a manager to open.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from PySide6.QtCore import QCoreApplication

from desktop_client.viewmodels.insights import empty_message
from shared.insights.export import ExportError, export_csv
from shared.insights.html_report import write_report
from shared.insights.store import (
    INSIGHTS_FILENAME,
    KINDS,
    InsightStore,
    InsightStoreError,
    NoInsightsError,
)

CONTEXT = "Reports"


def tr(text: str) -> str:
    return QCoreApplication.translate(CONTEXT, text)


class ReportFormat(enum.Enum):
    PDF = "pdf"
    HTML = "html"
    CSV = "csv"

    @property
    def suffix(self) -> str:
        return f".{self.value}"

    def label(self) -> str:
        return {
            ReportFormat.PDF: tr("PDF document (for printing)"),
            ReportFormat.HTML: tr("Web page (opens offline in any browser)"),
            ReportFormat.CSV: tr("CSV table (for spreadsheets)"),
        }[self]

    def file_filter(self) -> str:
        names = {
            ReportFormat.PDF: tr("PDF documents"),
            ReportFormat.HTML: tr("Web pages"),
            ReportFormat.CSV: tr("CSV tables"),
        }
        return f"{names[self]} (*{self.suffix})"


CSV_KIND_LABELS = {
    "pricing": "Price recommendations",
    "forecast": "Demand forecasts",
    "bundles": "Bundle suggestions",
    "trends": "Market trends",
    "value": "Value of collaboration",
}


@dataclass(frozen=True)
class ExportResult:
    """What happened, in words for the person who asked; ``path`` is set on success."""

    ok: bool
    message: str
    path: Path | None = None


def with_suffix(path: Path, fmt: ReportFormat) -> Path:
    """The destination with the format's suffix (added when the name has another or none)."""
    path = Path(path)
    return path if path.suffix.lower() == fmt.suffix else path.with_name(path.name + fmt.suffix)


class ReportsViewModel:
    """Exports from one node's insight store."""

    def __init__(self, node_dir: Path, *, clock: type[datetime] = datetime) -> None:
        self.node_dir = Path(node_dir)
        self._clock = clock

    @property
    def store_path(self) -> Path:
        return self.node_dir / INSIGHTS_FILENAME

    def suggested_name(self, fmt: ReportFormat, kind: str | None = None) -> str:
        day = self._clock.now(UTC).strftime("%Y-%m-%d")
        middle = f"-{kind}" if fmt is ReportFormat.CSV and kind else ""
        return f"insights{middle}-{day}{fmt.suffix}"

    def available_kinds(self) -> list[str]:
        """Kinds with at least one stored batch (what a CSV can be made of)."""
        try:
            with InsightStore(self.store_path, create=False) as store:
                return [kind for kind in KINDS if store.count(kind) > 0]
        except InsightStoreError:
            return []

    def export(self, fmt: ReportFormat, path: Path, kind: str = "pricing") -> ExportResult:
        """Write the report in ``fmt`` to ``path`` (CSV: the newest ``kind`` batch)."""
        target = with_suffix(Path(path).expanduser(), fmt)
        if target.is_dir():
            return ExportResult(
                False, tr("{path} is a folder. Choose a file name.").format(path=target)
            )
        try:
            with InsightStore(self.store_path, create=False) as store:
                if store.count() == 0:
                    return ExportResult(False, empty_message())
                if fmt is ReportFormat.HTML:
                    written = write_report(store, target, title=self._title(store))
                elif fmt is ReportFormat.PDF:
                    from desktop_client.viewmodels.reports_pdf import write_pdf

                    written = write_pdf(store.latest_by_kind(), target, title=self._title(store))
                else:
                    batch = store.latest(kind)
                    if batch is None:
                        return ExportResult(False, empty_message(kind))
                    written = export_csv(batch, target)
        except NoInsightsError:
            return ExportResult(False, empty_message())
        except (InsightStoreError, ExportError) as exc:
            return ExportResult(
                False, tr("The report could not be written: {reason}").format(reason=exc)
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return ExportResult(
                False,
                tr("Could not write {path}: {reason}. Choose another folder or file name.").format(
                    path=target, reason=reason
                ),
            )
        return ExportResult(
            True,
            tr("Saved the {what} to {path}").format(what=_what(fmt, kind), path=written),
            written,
        )

    def _title(self, store: InsightStore) -> str:
        nodes = sorted({b.node for b in store.latest_by_kind().values()})
        return (
            tr("Insights for {shop}").format(shop=", ".join(nodes))
            if nodes
            else tr("Retail insights")
        )


def _what(fmt: ReportFormat, kind: str) -> str:
    if fmt is ReportFormat.PDF:
        return tr("PDF report")
    if fmt is ReportFormat.HTML:
        return tr("web page report")
    return tr("{kind} table").format(kind=tr(CSV_KIND_LABELS.get(kind, kind)).lower())
