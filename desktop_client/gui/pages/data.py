"""The Data page: open a sales export, fix its column mapping, read the report, use the data.

A thin view over :class:`desktop_client.viewmodels.data_import.DataImportViewModel`; reading
and checking a file runs on a QThreadPool worker so the window never freezes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_client.gui.context import AppContext
from desktop_client.gui.models import DataFrameModel, IssueFilterModel, IssueModel
from desktop_client.viewmodels.data_import import (
    BUSY,
    CancelToken,
    DataImportViewModel,
    ImportCancelled,
    ImportOutcome,
    MappingOrigin,
    Progress,
    prepared_data,
)
from shared.ingest import ColumnMapping, Severity

log = logging.getLogger(__name__)

FILE_FILTER = "Sales exports (*.csv *.tsv *.txt *.xlsx *.parquet);;All files (*)"


class _JobSignals(QObject):
    progress = Signal(int, str)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class BackgroundJob(QRunnable):
    """Runs ``work(progress, cancel)`` on the thread pool; results come back as signals.

    Why: pandas/pyarrow work must never run on the GUI thread. A job whose token was cancelled
    reports ``cancelled`` even if its work finished, so a late result is never applied."""

    def __init__(self, work: Callable[[Progress, CancelToken], Any]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the page keeps it until its signals have been delivered
        self.signals = _JobSignals()
        self.token = CancelToken()
        self.returned = threading.Event()  # set once run() is over: safe to let go
        self._work = work

    def deliver_to(
        self,
        owner: QObject,
        *,
        finished: Callable[[Any], None],
        failed: Callable[[str], None] | None = None,
        progress: Callable[[int, str], None] | None = None,
        cancelled: Callable[[], None] | None = None,
    ) -> None:
        """Connect the job's outcome to ``owner``'s callbacks, dropped once ``owner`` is gone.

        Why: Qt disconnects a destroyed widget's own slots, but not a lambda or ``partial``
        around them; a page closed while its job ran would otherwise get a late result."""
        for signal, callback in (
            (self.signals.finished, finished),
            (self.signals.failed, failed),
            (self.signals.progress, progress),
            (self.signals.cancelled, cancelled),
        ):
            if callback is not None:
                signal.connect(_while_alive(owner, callback))

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.returned.set()

    def _run(self) -> None:
        try:
            result = self._work(self.signals.progress.emit, self.token)
        except ImportCancelled:
            self.signals.cancelled.emit()
            return
        except Exception as exc:  # a bug reaches the owner as one plain line
            log.exception("background job failed")
            self.signals.failed.emit(f"{exc}")
            return
        if self.token.cancelled:
            self.signals.cancelled.emit()
        else:
            self.signals.finished.emit(result)


def _while_alive(owner: QObject, callback: Callable[..., None]) -> Callable[..., None]:
    def call(*args: Any) -> None:
        if shiboken6.isValid(owner):
            callback(*args)

    return call


class JobKeeper:
    """Holds every started job until its ``run`` has returned, so Python never frees a
    runnable the pool is still executing (a superseded import keeps running until it ends)."""

    def __init__(self) -> None:
        self._jobs: list[BackgroundJob] = []

    def start(self, job: BackgroundJob) -> None:
        self._jobs = [j for j in self._jobs if not j.returned.is_set()]
        self._jobs.append(job)
        QThreadPool.globalInstance().start(job)


def _tr(text: str) -> str:
    from PySide6.QtCore import QCoreApplication

    return QCoreApplication.translate("DataPage", text)


class DataPage(QWidget):
    """Import the shop's sales export and prepare the node's data."""

    analysis_finished = Signal()  # a file was analysed (or could not be read) and is shown
    data_used = Signal(str)  # "Use this data" wrote the node's data (path)
    job_ended = Signal(str)  # "finished", "cancelled" or "failed"

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.viewmodel = DataImportViewModel(context.node_dir)
        self._job: BackgroundJob | None = None
        self._keeper = JobKeeper()
        self._filling_mapping = False
        self.setAcceptDrops(not context.viewer)
        self._build()
        self._update_controls()

    @property
    def title(self) -> str:
        return _tr("Data")

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel(
            _tr(
                "Open your till or spreadsheet export (CSV, Excel or Parquet), or drop it here. "
                "Your file is only read; it never leaves this computer."
            )
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)

        top = QHBoxLayout()
        self.open_button = QPushButton(_tr("&Open a sales export…"))
        self.open_button.setAccessibleName(_tr("Open a sales export"))
        self.open_button.clicked.connect(self.choose_file)
        self.file_label = QLabel(_tr("No file opened."))
        self.file_label.setAccessibleName(_tr("Opened file"))
        top.addWidget(self.open_button)
        top.addWidget(self.file_label, 1)
        layout.addLayout(top)

        busy = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setAccessibleName(_tr("Import progress"))
        self.progress.setRange(0, 100)
        self.status_label = QLabel("")
        self.cancel_button = QPushButton(_tr("&Cancel"))
        self.cancel_button.setAccessibleName(_tr("Cancel the import"))
        self.cancel_button.clicked.connect(self.cancel)
        busy.addWidget(self.progress, 1)
        busy.addWidget(self.status_label)
        busy.addWidget(self.cancel_button)
        layout.addLayout(busy)

        self.problem_label = QLabel("")
        self.problem_label.setWordWrap(True)
        self.problem_label.setAccessibleName(_tr("What needs fixing"))
        self.problem_label.setStyleSheet("color: #a00000;")
        layout.addWidget(self.problem_label)

        self.tabs = QTabWidget()
        self.tabs.setAccessibleName(_tr("Import details"))
        self.tabs.addTab(self._mapping_tab(), _tr("Column &mapping"))
        self.tabs.addTab(self._report_tab(), _tr("Validation &report"))
        self.tabs.addTab(self._preview_tab(), _tr("&Preview"))
        layout.addWidget(self.tabs, 1)

        bottom = QHBoxLayout()
        self.prepared_label = QLabel("")
        self.prepared_label.setAccessibleName(_tr("Data in use"))
        self.use_button = QPushButton(_tr("&Use this data"))
        self.use_button.setAccessibleName(_tr("Use this data for insights and training"))
        self.use_button.clicked.connect(self.use_data)
        bottom.addWidget(self.prepared_label, 1)
        bottom.addWidget(self.use_button)
        layout.addLayout(bottom)

        self.setTabOrder(self.open_button, self.cancel_button)
        self.setTabOrder(self.cancel_button, self.tabs)
        self.setTabOrder(self.tabs, self.use_button)

    def _mapping_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        self.origin_label = QLabel("")
        self.origin_label.setWordWrap(True)
        layout.addWidget(self.origin_label)
        self.mapping_table = QTableWidget(0, 3)
        self.mapping_table.setAccessibleName(_tr("Column mapping"))
        self.mapping_table.setHorizontalHeaderLabels(
            [_tr("Field"), _tr("Your column"), _tr("Confidence")]
        )
        header = self.mapping_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.mapping_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        layout.addWidget(self.mapping_table, 1)
        row = QHBoxLayout()
        self.save_mapping_button = QPushButton(_tr("&Save this mapping for next time"))
        self.save_mapping_button.setAccessibleName(_tr("Save this mapping for next time"))
        self.save_mapping_button.clicked.connect(self.save_mapping)
        row.addStretch(1)
        row.addWidget(self.save_mapping_button)
        layout.addLayout(row)
        self.combos: dict[str, QComboBox] = {}
        return tab

    def _report_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        self.summary_label = QLabel(_tr("Open a file to check it."))
        self.summary_label.setAccessibleName(_tr("Report summary"))
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)
        filters = QHBoxLayout()
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText(_tr("Filter: row, column, value or words"))
        self.filter_edit.setAccessibleName(_tr("Filter the report"))
        self.filter_edit.setClearButtonEnabled(True)
        self.severity_combo = QComboBox()
        self.severity_combo.setAccessibleName(_tr("Show errors, warnings or both"))
        self.severity_combo.addItem(_tr("Errors and warnings"), None)
        self.severity_combo.addItem(_tr("Errors only"), Severity.ERROR)
        self.severity_combo.addItem(_tr("Warnings only"), Severity.WARNING)
        filters.addWidget(self.filter_edit, 1)
        filters.addWidget(self.severity_combo)
        layout.addLayout(filters)
        self.issue_model = IssueModel(self)
        self.issue_proxy = IssueFilterModel(self)
        self.issue_proxy.setSourceModel(self.issue_model)
        self.report_view = QTableView()
        self.report_view.setAccessibleName(_tr("Validation report"))
        self.report_view.setModel(self.issue_proxy)
        self.report_view.setSortingEnabled(True)
        self.report_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.report_view.horizontalHeader().setStretchLastSection(True)
        # Column widths from the first rows only: measuring thousands of issues froze the window.
        self.report_view.horizontalHeader().setResizeContentsPrecision(100)
        self.report_view.verticalHeader().setVisible(False)
        layout.addWidget(self.report_view, 1)
        self.filter_edit.textChanged.connect(self.issue_proxy.set_text)
        self.severity_combo.currentIndexChanged.connect(
            lambda _i: self.issue_proxy.set_severity(self.severity_combo.currentData())
        )
        return tab

    def _preview_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        self.preview_model = DataFrameModel(parent=self)
        self.preview_view = QTableView()
        self.preview_view.setAccessibleName(_tr("Preview of the imported data"))
        self.preview_view.setModel(self.preview_model)
        layout.addWidget(self.preview_view)
        return tab

    # -- page contract --------------------------------------------------------------------

    def refresh(self) -> None:
        """Called when the page is shown: say what the node uses now (cheap)."""
        prepared = prepared_data(self.context.node_dir)
        if prepared is None:
            self.prepared_label.setText(_tr("No data in use yet."))
        else:
            self.prepared_label.setText(
                _tr("In use: {rows} rows ({name}).").format(
                    rows=f"{prepared.rows:,}", name=prepared.name or prepared.path.name
                )
            )
        self._update_controls()

    # -- drag and drop --------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_path(event) is not None and not self.context.viewer:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_path(event)
        if path is None or self.context.viewer:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_path(path)

    @staticmethod
    def _dropped_path(event: QDragEnterEvent | QDropEvent) -> Path | None:
        urls = event.mimeData().urls() if event.mimeData() is not None else []
        local = [url.toLocalFile() for url in urls if url.isLocalFile()]
        return Path(local[0]) if len(local) == 1 else None

    # -- actions --------------------------------------------------------------------------

    @Slot()
    def choose_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, _tr("Open a sales export"), str(Path.home()), _tr(FILE_FILTER)
        )
        if name:
            self.open_path(Path(name))

    def open_path(self, path: Path, mapping: ColumnMapping | None = None) -> None:
        """Analyse ``path`` in the background (the saved or suggested mapping unless given)."""
        if self.context.viewer:
            return
        viewmodel = self.viewmodel
        self.file_label.setText(str(path))
        self._start(
            lambda progress, cancel: viewmodel.analyse(
                path, mapping, progress=progress, cancel=cancel
            ),
            self._analysed,
            _tr("Reading {name}…").format(name=Path(path).name),
        )

    def set_field_source(self, field_name: str, source: str | None) -> None:
        """Map ``field_name`` to the file's column ``source`` (None: not in the file); the
        file is checked again with the new mapping."""
        if self.viewmodel.outcome is None or self.context.viewer:
            return
        try:
            mapping = self.viewmodel.remapped(field_name, source)
        except ValueError as exc:
            self.problem_label.setText(str(exc))
            return
        self.open_path(self.viewmodel.outcome.path, mapping)

    @Slot()
    def save_mapping(self) -> None:
        try:
            path = self.viewmodel.save_mapping()
        except (OSError, ValueError) as exc:
            self.problem_label.setText(_tr("The mapping could not be saved: {e}").format(e=exc))
            return
        self.status_label.setText(_tr("Mapping saved."))
        log.info("mapping saved to %s", path)
        self._show_origin()

    @Slot()
    def use_data(self) -> None:
        if self.viewmodel.usable_frame() is None or self.context.viewer:
            return
        viewmodel = self.viewmodel
        self._start(
            lambda progress, cancel: viewmodel.use_data(progress=progress, cancel=cancel),
            self._used,
            _tr("Preparing your data…"),
        )

    @Slot()
    def cancel(self) -> None:
        if self._job is not None:
            self._job.token.cancel()
            self.status_label.setText(_tr("Cancelling…"))

    # -- jobs -----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._job is not None

    def _start(
        self,
        work: Callable[[Progress, CancelToken], Any],
        done: Callable[[Any], None],
        text: str,
    ) -> None:
        if self._job is not None:
            self._job.token.cancel()  # its late result is ignored: only the newest job counts
        job = BackgroundJob(work)
        self._job = job
        job.deliver_to(
            self,
            progress=partial(self._progress, job),
            finished=partial(self._finish, job, done),
            failed=partial(self._failed, job),
            cancelled=partial(self._cancelled, job),
        )
        self.problem_label.clear()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status_label.setText(text)
        self._update_controls()
        self._keeper.start(job)

    def _progress(self, job: BackgroundJob, percent: int, text: str) -> None:
        if job is self._job:
            if percent == BUSY:
                self.progress.setRange(0, 0)  # a moving bar: working, share unknown
            else:
                self.progress.setRange(0, 100)
                self.progress.setValue(percent)
            self.status_label.setText(_tr(text))

    def _finish(self, job: BackgroundJob, done: Callable[[Any], None], result: Any) -> None:
        if job is not self._job:
            return
        if job.token.cancelled:  # Cancel was pressed after the work ended: still discard it
            self._cancelled(job)
            return
        self._job = None
        done(result)
        self._update_controls()
        self.job_ended.emit("finished")

    def _failed(self, job: BackgroundJob, message: str) -> None:
        if job is not self._job:
            return
        self._job = None
        self.progress.setValue(0)
        self.status_label.setText("")
        self.problem_label.setText(
            _tr("Something went wrong: {message}. Nothing was changed; please try again.").format(
                message=message
            )
        )
        self._update_controls()
        self.job_ended.emit("failed")

    def _cancelled(self, job: BackgroundJob) -> None:
        if job is not self._job:
            return
        self._job = None
        self.progress.setValue(0)
        self.status_label.setText(_tr("Cancelled; nothing was changed."))
        self._update_controls()
        self.job_ended.emit("cancelled")

    def _analysed(self, outcome: ImportOutcome) -> None:
        self.viewmodel.accept(outcome)
        self._show_outcome()
        self.analysis_finished.emit()

    def _used(self, path: Path) -> None:
        self.status_label.setText(_tr("Your data is ready for insights and training."))
        self.refresh()
        self.context.signals.data_changed.emit()
        self.data_used.emit(str(path))

    # -- showing --------------------------------------------------------------------------

    def _show_outcome(self) -> None:
        vm = self.viewmodel
        self._fill_mapping()
        self._show_origin()
        self.issue_model.set_issues(vm.issues())
        self.report_view.resizeColumnsToContents()
        self.preview_model.set_frame(vm.preview_frame())
        summary = vm.summary()
        if summary is None:
            self.summary_label.setText(_tr("Open a file to check it."))
        elif not summary.readable:
            self.summary_label.setText(_tr("The file could not be read."))
        else:
            verdict = _tr("Ready to use.") if summary.valid else _tr("Needs fixing.")
            self.summary_label.setText(
                _tr(
                    "{verdict} Rows read: {read}; rows kept: {kept}; errors: {errors}; "
                    "warnings: {warnings}."
                ).format(
                    verdict=verdict,
                    read=f"{summary.rows_read:,}",
                    kept=f"{summary.rows_kept:,}",
                    errors=f"{summary.errors:,}",
                    warnings=f"{summary.warnings:,}",
                )
            )
        problem = vm.problem()
        self.problem_label.setText(problem or "")
        self.status_label.setText(_tr("Checked.") if problem is None else _tr("Needs fixing."))
        if problem is not None and vm.summary() is not None and vm.issues():
            self.tabs.setCurrentIndex(1)

    def _show_origin(self) -> None:
        outcome = self.viewmodel.outcome
        if outcome is None:
            self.origin_label.clear()
            return
        text = {
            MappingOrigin.SAVED: _tr("Using the mapping you saved for this export layout."),
            MappingOrigin.SUGGESTED: _tr(
                "Suggested from your column names; check each field and change it if needed."
            ),
            MappingOrigin.EDITED: _tr("Your changes are applied; save them to reuse next time."),
        }[outcome.origin]
        self.origin_label.setText(text)

    def _fill_mapping(self) -> None:
        self._filling_mapping = True
        try:
            rows = self.viewmodel.field_rows()
            headers = self.viewmodel.headers
            self.mapping_table.setRowCount(len(rows))
            self.combos = {}
            for index, row in enumerate(rows):
                label = QTableWidgetItem(row.field + (" *" if row.core else ""))
                label.setToolTip(row.description)
                self.mapping_table.setItem(index, 0, label)
                combo = QComboBox()
                combo.setAccessibleName(_tr("Column for {field}").format(field=row.field))
                combo.addItem(_tr("(not in my file)"), None)
                for header in headers:
                    combo.addItem(header, header)
                combo.setCurrentIndex(0 if row.source is None else headers.index(row.source) + 1)
                combo.setEnabled(not self.context.viewer)
                combo.currentIndexChanged.connect(
                    lambda _i, f=row.field, c=combo: self._combo_changed(f, c)
                )
                self.mapping_table.setCellWidget(index, 1, combo)
                confidence = "" if row.confidence is None else f"{row.confidence:.0%}"
                self.mapping_table.setItem(index, 2, QTableWidgetItem(confidence))
                self.combos[row.field] = combo
        finally:
            self._filling_mapping = False

    def _combo_changed(self, field_name: str, combo: QComboBox) -> None:
        if not self._filling_mapping:
            self.set_field_source(field_name, combo.currentData())

    def _update_controls(self) -> None:
        editable = not self.context.viewer
        busy = self._job is not None
        self.open_button.setEnabled(editable and not busy)
        self.cancel_button.setVisible(busy)
        self.progress.setVisible(busy)
        has_mapping = self.viewmodel.mapping is not None and bool(self.viewmodel.headers)
        self.save_mapping_button.setEnabled(editable and not busy and has_mapping)
        self.use_button.setEnabled(
            editable and not busy and self.viewmodel.usable_frame() is not None
        )
