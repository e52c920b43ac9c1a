"""The Privacy page: what the shop shares, what it has spent, and its data rights.

Thin view over the privacy view-models (``desktop_client.viewmodels.privacy_*``); anything that
reads many rows or talks to the coordinator runs on a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop_client.gui.context import AppContext
from desktop_client.gui.pages.data import BackgroundJob, JobKeeper
from desktop_client.viewmodels.data_import import CancelToken, Progress
from desktop_client.viewmodels.privacy_budget import (
    Budget,
    LedgerSnapshot,
    PrivacyViewModel,
    RoundCost,
    explanation,
)
from desktop_client.viewmodels.privacy_coordinator import (
    CoordinatorClient,
    CoordinatorProblem,
    DeletionReceipt,
)
from desktop_client.viewmodels.privacy_erase import (
    KEPT_REASON,
    EraseRefused,
    EraseResult,
    erase_local_copies,
    local_copies,
)
from desktop_client.viewmodels.privacy_export import export_my_data
from shared.schema import Task

log = logging.getLogger(__name__)


def _tr(text: str) -> str:
    return QCoreApplication.translate("PrivacyPage", text)


TASK_TITLES = {
    Task.DEMAND_PRICING: "Demand and pricing",
    Task.FORECASTING: "Demand forecasting",
    Task.BUNDLES: "Bundle suggestions",
}


class BudgetGauge(QWidget):
    """A horizontal gauge: spent (filled) against the cap, with the numbers written on it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.budget: Budget | None = None  # not read yet
        self.setMinimumHeight(34)
        self.setAccessibleName(_tr("Privacy budget gauge"))

    def set_budget(self, budget: Budget) -> None:
        self.budget = budget
        self.setAccessibleDescription(self.text())
        self.setToolTip(self.text())
        self.update()

    def text(self) -> str:
        b = self.budget
        if b is None:
            return _tr("Reading your privacy ledger…")
        return _tr("ε spent {spent:.2f} · remaining {left:.2f} · cap {cap:.2f}").format(
            spent=b.spent, left=b.remaining, cap=b.cap
        )

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = QRectF(self.rect()).adjusted(1, 1, -1, -1)
        painter.setPen(self.palette().mid().color())
        painter.setBrush(self.palette().base())
        painter.drawRoundedRect(frame, 4, 4)
        share = self.budget.fraction_spent if self.budget is not None else 0.0
        filled = QRectF(frame.left(), frame.top(), frame.width() * share, frame.height())
        colour = QColor("#2e7d32") if share < 0.7 else QColor("#ef6c00")
        if share >= 0.95:
            colour = QColor("#c62828")
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawRoundedRect(filled, 4, 4)
        painter.setPen(self.palette().text().color())
        painter.drawText(frame, Qt.AlignmentFlag.AlignCenter, self.text())
        painter.end()


class PrivacyPage(QWidget):
    """Consent per task, the ε budget and the shop's data rights."""

    cost_updated = Signal(str)
    snapshot_shown = Signal()  # consent and budget were (re)read and are shown
    exported = Signal(str)
    erased = Signal(object)  # EraseResult
    deletion_requested = Signal(str)
    job_failed = Signal(str)

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.viewmodel = PrivacyViewModel(context.node_dir)
        self._keeper = JobKeeper()
        self._cost_check = 0
        self._filling = False
        self._build()
        self._apply_mode()

    @property
    def title(self) -> str:
        return _tr("Privacy")

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        layout = QVBoxLayout(body)
        layout.addWidget(self._consent_box())
        layout.addWidget(self._budget_box())
        layout.addWidget(self._rights_box())
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.message_label.setAccessibleName(_tr("Privacy messages"))
        layout.addWidget(self.message_label)
        layout.addStretch(1)

    def _consent_box(self) -> QGroupBox:
        box = QGroupBox(_tr("What you share"))
        grid = QGridLayout(box)
        self.consent_boxes: dict[Task, QCheckBox] = {}
        for row, task in enumerate(Task):
            check = QCheckBox(_tr(TASK_TITLES[task]))
            check.setAccessibleName(_tr("Take part in {task}").format(task=_tr(TASK_TITLES[task])))
            note = QLabel(_tr(explanation(task)))
            note.setWordWrap(True)
            check.setAccessibleDescription(note.text())
            check.toggled.connect(lambda on, t=task: self.set_consent(t, on))
            grid.addWidget(check, row, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(note, row, 1)
            self.consent_boxes[task] = check
        grid.setColumnStretch(1, 1)
        return box

    def _budget_box(self) -> QGroupBox:
        box = QGroupBox(_tr("Privacy budget (ε)"))
        layout = QVBoxLayout(box)
        intro = QLabel(
            _tr(
                "Every contribution spends a little of your privacy budget ε; when it is used "
                "up, this computer declines further rounds. Smaller is more private."
            )
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.gauge = BudgetGauge()
        layout.addWidget(self.gauge)
        self.chart = pg.PlotWidget()
        self.chart.setAccessibleName(_tr("ε spent per round"))
        self.chart.setMinimumHeight(160)
        self.chart.setMaximumHeight(260)
        self.chart.setBackground(None)
        self.chart.setLabel("left", "ε")
        self.chart.setMouseEnabled(x=False, y=False)
        self.chart.hideButtons()
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush="#1565c0")
        self.chart.addItem(self.bars)
        layout.addWidget(self.chart)
        self.spending_label = QLabel("")
        self.spending_label.setWordWrap(True)
        layout.addWidget(self.spending_label)

        cost_row = QHBoxLayout()
        self.cost_label = QLabel(_tr("Next round: checking…"))
        self.cost_label.setWordWrap(True)
        self.cost_label.setAccessibleName(_tr("Cost of the next round"))
        self.cost_button = QPushButton(_tr("Check the &next round"))
        self.cost_button.setAccessibleName(_tr("Check what the next round would cost"))
        self.cost_button.clicked.connect(self.check_next_round)
        cost_row.addWidget(self.cost_label, 1)
        cost_row.addWidget(self.cost_button)
        layout.addLayout(cost_row)

        cap_row = QHBoxLayout()
        cap_row.addWidget(QLabel(_tr("Lower my lifetime cap to")))
        self.cap_spin = QDoubleSpinBox()
        self.cap_spin.setDecimals(2)
        self.cap_spin.setSingleStep(0.5)
        self.cap_spin.setAccessibleName(_tr("New lifetime cap (ε)"))
        self.cap_button = QPushButton(_tr("&Lower the cap"))
        self.cap_button.setAccessibleName(_tr("Lower the lifetime cap"))
        self.cap_button.clicked.connect(self.lower_cap)
        cap_row.addWidget(self.cap_spin)
        cap_row.addWidget(self.cap_button)
        cap_row.addStretch(1)
        layout.addLayout(cap_row)
        return box

    def _rights_box(self) -> QGroupBox:
        box = QGroupBox(_tr("Your data"))
        layout = QVBoxLayout(box)
        self.export_button = QPushButton(_tr("&Export my data…"))
        self.export_button.setAccessibleName(_tr("Export my contributions and local data"))
        self.export_button.clicked.connect(self.choose_export)
        self.erase_button = QPushButton(_tr("&Delete my local data…"))
        self.erase_button.setAccessibleName(_tr("Delete every local copy the app made"))
        self.erase_button.clicked.connect(self.confirm_erase)
        self.request_button = QPushButton(_tr("Ask the coordinator to de&lete my data…"))
        self.request_button.setAccessibleName(_tr("Send a deletion request to the coordinator"))
        self.request_button.clicked.connect(self.confirm_deletion_request)
        for button in (self.export_button, self.erase_button, self.request_button):
            layout.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)
        note = QLabel(_tr(KEPT_REASON))
        note.setWordWrap(True)
        layout.addWidget(note)
        return box

    def _apply_mode(self) -> None:
        editable = not self.context.viewer
        for widget in (
            *self.consent_boxes.values(),
            self.cap_spin,
            self.cap_button,
            self.cost_button,
            self.export_button,
            self.erase_button,
            self.request_button,
        ):
            widget.setEnabled(editable)

    # -- page contract --------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read consent and budget on a worker (the ledger's accountant loads torch), then
        price the next round."""
        self._run(
            lambda progress, cancel: self.viewmodel.snapshot(),
            partial(self._show_snapshot, not self.context.viewer),
        )

    def _show_snapshot(self, then_price: bool, snapshot: LedgerSnapshot) -> None:
        self._filling = True
        try:
            for task, granted in snapshot.consents.items():
                self.consent_boxes[task].setChecked(granted)
        finally:
            self._filling = False
        budget, spending = snapshot.budget, snapshot.spending
        self.gauge.set_budget(budget)
        self.bars.setOpts(
            x=list(range(1, len(spending) + 1)), height=[s.added for s in spending], width=0.6
        )
        axis = self.chart.getAxis("bottom")
        axis.setTicks([[(i + 1, s.label) for i, s in enumerate(spending)]])
        if spending:
            last = spending[-1]
            self.spending_label.setText(
                _tr("{n} contributions so far; the last one ({label}) spent ε {added:.3f}.").format(
                    n=len(spending), label=last.label, added=last.added
                )
            )
        else:
            self.spending_label.setText(_tr("Nothing has left this computer yet."))
        self.cap_spin.setRange(max(budget.spent, 0.01), budget.cap)
        self.cap_spin.setValue(budget.cap)
        self.snapshot_shown.emit()
        if then_price:
            self.check_next_round()

    # -- consent and cap ------------------------------------------------------------------

    def set_consent(self, task: Task, granted: bool) -> None:
        if self._filling or self.context.viewer:
            return
        viewmodel = self.viewmodel

        def work(progress: Progress, cancel: CancelToken) -> tuple[str | None, LedgerSnapshot]:
            try:
                viewmodel.set_consent(task, granted)
            except (ValueError, OSError) as exc:
                return str(exc), viewmodel.snapshot()  # the boxes show the ledger's truth
            return None, viewmodel.snapshot()

        self._run(work, partial(self._consent_saved, task, granted))

    def _consent_saved(
        self, task: Task, granted: bool, result: tuple[str | None, LedgerSnapshot]
    ) -> None:
        error, snapshot = result
        if error is not None:
            self.message_label.setText(_tr("Your choice could not be saved: {e}").format(e=error))
        else:
            template = (
                _tr("You take part in {task}.")
                if granted
                else _tr("You no longer take part in {task}.")
            )
            self.message_label.setText(template.format(task=_tr(TASK_TITLES[task]).lower()))
            self.context.signals.consent_changed.emit()
        self._show_snapshot(True, snapshot)

    @Slot()
    def lower_cap(self) -> None:
        if self.context.viewer:
            return
        viewmodel, value = self.viewmodel, self.cap_spin.value()

        def work(progress: Progress, cancel: CancelToken) -> tuple[str | None, LedgerSnapshot]:
            try:
                viewmodel.lower_cap(value)
            except (ValueError, OSError) as exc:
                return str(exc), viewmodel.snapshot()
            return None, viewmodel.snapshot()

        self._run(work, self._cap_lowered)

    def _cap_lowered(self, result: tuple[str | None, LedgerSnapshot]) -> None:
        error, snapshot = result
        if error is not None:
            self.message_label.setText(error)
        else:
            self.message_label.setText(
                _tr("Your lifetime cap is now ε {cap:g}.").format(cap=snapshot.budget.cap)
            )
            self.context.signals.consent_changed.emit()
        self._show_snapshot(True, snapshot)

    # -- next round -----------------------------------------------------------------------

    @Slot()
    def check_next_round(self) -> None:
        if self.context.viewer:
            return
        node_dir = self.context.node_dir
        viewmodel = self.viewmodel

        def work(progress: Progress, cancel: CancelToken) -> tuple[RoundCost, str]:
            reason = ""
            try:
                offer = CoordinatorClient(node_dir).current_offer()
            except CoordinatorProblem as exc:
                offer, reason = None, str(exc)
            return viewmodel.next_round_cost(offer), reason

        self.cost_label.setText(_tr("Next round: checking…"))
        self._cost_check += 1
        self._run(work, partial(self._cost_done, self._cost_check))

    def _cost_done(self, check: int, result: tuple[RoundCost, str]) -> None:
        if check != self._cost_check:
            return  # an older check, overtaken by a newer one (consent or cap changed)
        cost, reason = result
        text = _tr("Next round: {message}").format(message=_tr(cost.message))
        if reason and not cost.known:
            text += f" ({reason})"
        self.cost_label.setText(text)
        self.cost_updated.emit(text)

    # -- data rights ----------------------------------------------------------------------

    @Slot()
    def choose_export(self) -> None:
        suggested = Path.home() / f"retail-intelligence-my-data-{date.today():%Y-%m-%d}.zip"
        name, _ = QFileDialog.getSaveFileName(
            self, _tr("Export my data"), str(suggested), _tr("Zip archive (*.zip)")
        )
        if name:
            self.export_to(Path(name))

    def export_to(self, destination: Path) -> None:
        node_dir = self.context.node_dir
        self.message_label.setText(_tr("Exporting…"))
        self._run(
            lambda progress, cancel: export_my_data(node_dir, destination, progress=progress),
            lambda path: self._done_message(
                self.exported, _tr("Exported to {path}.").format(path=path), str(path)
            ),
        )

    @Slot()
    def confirm_erase(self) -> None:
        if self.context.viewer:
            return
        names = [p.name for p in local_copies(self.context.node_dir)]
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle(_tr("Delete my local data"))
        box.setText(
            _tr("Delete every copy of your data this app made on this computer?")
            if names
            else _tr("The app holds no copies of your data on this computer.")
        )
        box.setInformativeText(
            _tr("This deletes: {names}. Your original export files are not touched. {kept}").format(
                names=", ".join(names) or _tr("nothing"), kept=_tr(KEPT_REASON)
            )
        )
        also = QCheckBox(_tr("Also remove this computer's enrollment with the coordinator"))
        box.setCheckBox(also)
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.button(QMessageBox.StandardButton.Yes).setText(_tr("Delete"))
        if box.exec() == QMessageBox.StandardButton.Yes:
            self.erase(include_enrollment=also.isChecked())

    def erase(self, include_enrollment: bool = False) -> None:
        try:
            result = erase_local_copies(
                self.context.node_dir, include_enrollment=include_enrollment
            )
        except (EraseRefused, OSError) as exc:
            self.message_label.setText(str(exc))
            return
        self._erased(result)

    def _erased(self, result: EraseResult) -> None:
        self.message_label.setText(
            _tr("Deleted {count} item(s) from this computer.").format(count=len(result.removed))
            + (" " + _tr("Your enrollment was kept.") if result.kept_enrollment else "")
        )
        self.context.signals.data_changed.emit()
        self.context.signals.insights_changed.emit()
        if not result.kept_enrollment:
            self.context.signals.enrollment_changed.emit()
        self.refresh()
        self.erased.emit(result)

    @Slot()
    def confirm_deletion_request(self) -> None:
        if self.context.viewer:
            return
        answer = QMessageBox.question(
            self,
            _tr("Ask the coordinator to delete my data"),
            _tr(
                "Send a request to the coordinator to delete what it holds about your shop? "
                "The request is recorded and its admin acts on it."
            ),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.request_deletion()

    def request_deletion(self, note: str = "") -> None:
        node_dir = self.context.node_dir
        self.message_label.setText(_tr("Sending your deletion request…"))
        self._run(
            lambda progress, cancel: CoordinatorClient(node_dir).request_deletion(note),
            self._requested,
        )

    def _requested(self, receipt: DeletionReceipt) -> None:
        text = receipt.message or _tr("Deletion request #{id} recorded.").format(
            id=receipt.request_id
        )
        self._done_message(self.deletion_requested, text, text)

    # -- jobs -----------------------------------------------------------------------------

    def _done_message(self, signal: Any, text: str, payload: str) -> None:
        self.message_label.setText(text)
        signal.emit(payload)

    def _run(
        self, work: Callable[[Progress, CancelToken], Any], done: Callable[[Any], None]
    ) -> None:
        job = BackgroundJob(work)
        job.deliver_to(self, finished=done, failed=self._failed)
        self._keeper.start(job)

    def _failed(self, message: str) -> None:
        self.message_label.setText(message)
        self.job_failed.emit(message)
