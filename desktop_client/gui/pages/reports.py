"""The Reports page: save the insights as a PDF, an offline web page or a CSV table.

A thin view over :class:`desktop_client.viewmodels.reports.ReportsViewModel`. Exports read only
the local insight store (they work in view-only mode, offline) and run on a QThreadPool worker
so the window never freezes while a report with charts is laid out.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from desktop_client.gui.context import AppContext
from desktop_client.viewmodels.insights import empty_message
from desktop_client.viewmodels.reports import (
    CSV_KIND_LABELS,
    ExportResult,
    ReportFormat,
    ReportsViewModel,
    tr,
    with_suffix,
)

log = logging.getLogger(__name__)
LAST_FOLDER_KEY = "reports/last_folder"


class _ExportSignals(QObject):
    finished = Signal(object)


class ExportJob(QRunnable):
    """One export on the thread pool; an unexpected failure comes back as one plain line."""

    def __init__(
        self, view_model: ReportsViewModel, fmt: ReportFormat, path: Path, kind: str
    ) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the page keeps it until its signal was delivered
        self.signals = _ExportSignals()
        self._args = (view_model, fmt, path, kind)

    def run(self) -> None:
        view_model, fmt, path, kind = self._args
        try:
            result = view_model.export(fmt, path, kind)
        except Exception:  # a bug must not kill the worker silently or show a traceback
            log.exception("report export failed")
            result = ExportResult(
                False,
                tr(
                    "The report could not be written because of an unexpected problem; "
                    "the details are in the app's log."
                ),
            )
        self.signals.finished.emit(result)


class ReportsPage(QWidget):
    """Pick a format (and for CSV which insights), then a destination file."""

    export_finished = Signal(object)  # ExportResult

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.view_model = ReportsViewModel(context.node_dir)
        self.job: ExportJob | None = None
        self.last_result: ExportResult | None = None
        layout = QVBoxLayout(self)
        intro = QLabel(
            self.tr(
                "Save this shop's insights to share or print. Reports are made on this "
                "computer from the insights already stored here; no network is needed."
            ),
            self,
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)

        box = QGroupBox(self.tr("Format"), self)
        box_layout = QVBoxLayout(box)
        self.formats = QButtonGroup(self)
        self.format_buttons: dict[ReportFormat, QRadioButton] = {}
        for index, fmt in enumerate(ReportFormat):
            button = QRadioButton(fmt.label(), box)
            button.setAccessibleName(fmt.label())
            self.formats.addButton(button, index)
            self.format_buttons[fmt] = button
            box_layout.addWidget(button)
        self.format_buttons[ReportFormat.PDF].setChecked(True)
        layout.addWidget(box)

        form = QFormLayout()
        self.kind = QComboBox(self)
        self.kind.setAccessibleName(self.tr("Insights to put in the CSV table"))
        for kind, label in CSV_KIND_LABELS.items():
            self.kind.addItem(self.tr(label), kind)
        form.addRow(self.tr("&Table (CSV only):"), self.kind)
        layout.addLayout(form)

        self.export_button = QPushButton(self.tr("&Export…"), self)
        self.export_button.setAccessibleName(self.tr("Export the report"))
        layout.addWidget(self.export_button)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setAccessibleName(self.tr("Export result"))
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.export_button.clicked.connect(self.choose_destination)
        self.formats.idToggled.connect(self._format_changed)
        context.signals.insights_changed.connect(self.refresh)
        self._format_changed()

    @property
    def title(self) -> str:
        return self.tr("Reports")

    def selected_format(self) -> ReportFormat:
        for fmt, button in self.format_buttons.items():
            if button.isChecked():
                return fmt
        return ReportFormat.PDF

    def selected_kind(self) -> str:
        return str(self.kind.currentData() or "pricing")

    @Slot()
    def refresh(self) -> None:
        """Say up front when there is nothing to export yet."""
        if self.job is not None:
            return
        kinds = self.view_model.available_kinds()
        self.export_button.setEnabled(bool(kinds))
        if not kinds:
            self.status.setText(empty_message())
        elif self.last_result is None:
            self.status.setText("")

    @Slot()
    def _format_changed(self) -> None:
        self.kind.setEnabled(self.selected_format() is ReportFormat.CSV)

    @Slot()
    def choose_destination(self) -> None:
        """Ask where to save (the file dialog), then export there."""
        fmt = self.selected_format()
        folder = str(self.context.settings.value(LAST_FOLDER_KEY, str(Path.home())))
        suggested = Path(folder) / self.view_model.suggested_name(fmt, self.selected_kind())
        chosen, _ = QFileDialog.getSaveFileName(
            self, self.tr("Save the report as"), str(suggested), fmt.file_filter()
        )
        if chosen:
            self.export_to(fmt, Path(chosen))

    def export_to(self, fmt: ReportFormat, path: Path, kind: str | None = None) -> None:
        """Export in the background; ``export_finished`` carries the result."""
        if self.job is not None:
            return
        kind = kind or self.selected_kind()
        target = with_suffix(path, fmt)
        self.context.settings.setValue(LAST_FOLDER_KEY, str(target.parent))
        self.export_button.setEnabled(False)
        self.status.setText(self.tr("Saving to {path}…").format(path=target))
        job = ExportJob(self.view_model, fmt, target, kind)
        job.signals.finished.connect(self._done)
        self.job = job
        QThreadPool.globalInstance().start(job)

    @Slot(object)
    def _done(self, result: ExportResult) -> None:
        self.job = None
        self.last_result = result
        self.export_button.setEnabled(True)
        self.status.setText(result.message)
        self.status.setStyleSheet("" if result.ok else "color: #a61b1b;")
        self.export_finished.emit(result)
