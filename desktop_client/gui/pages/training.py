"""The Training page: join or leave the federation's rounds and watch what the node does.

A thin view over :class:`desktop_client.viewmodels.training.TrainingViewModel` (which explains
why the node runs as a detached ``retail-node join``): a one-second timer asks the view-model
for what changed (a cheap read of the event stream's new bytes) and redraws.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, Qt, QTimer, Signal
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_client.gui.context import AppContext
from desktop_client.viewmodels.training import (
    LOG_SIZE,
    PRIVACY_PAGE,
    LossPoint,
    TrainingSnapshot,
    TrainingViewModel,
)

POLL_MS = 1000
CHART_RUNS = 4  # the newest campaigns drawn, one line each
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def _tr(text: str) -> str:
    return QCoreApplication.translate("TrainingPage", text)


class TrainingPage(QWidget):
    """Join/Leave, the connection, the round, ε spent, loss per round, declines and a log."""

    open_page_requested = Signal(str)  # a page key: the window shows that page

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.model = TrainingViewModel(context.node_dir)
        self._drawn: TrainingSnapshot | None = None

        self._log_count = -1

        layout = QVBoxLayout(self)
        heading = QLabel(f"<h2>{_tr('Training')}</h2>", self)
        intro = QLabel(
            _tr(
                "Take part in the rounds your coordinator runs. Your sales stay on this computer: "
                "only a privacy-protected, masked model update leaves it, and only for the tasks "
                "you consented to. The node keeps taking part after you close the app, until you "
                "press Leave."
            ),
            self,
        )
        intro.setWordWrap(True)
        layout.addWidget(heading)
        layout.addWidget(intro)

        self.guidance = QLabel(self)
        self.guidance.setObjectName("guidance")
        self.guidance.setWordWrap(True)
        self.guidance.setFrameShape(QFrame.Shape.StyledPanel)
        self.guidance.setStyleSheet("QLabel#guidance { background: #fff4d6; padding: 8px; }")
        self.guidance.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.guidance.setAccessibleName(_tr("What to do before joining"))
        self.guidance.linkActivated.connect(self._open_link)
        layout.addWidget(self.guidance)

        controls = QHBoxLayout()
        self.join_button = QPushButton(_tr("&Join rounds"), self)
        self.join_button.setObjectName("join")
        self.join_button.setAccessibleName(_tr("Join rounds"))
        self.join_button.setToolTip(_tr("Start taking part in the coordinator's rounds"))
        self.join_button.clicked.connect(self._join)
        self.leave_button = QPushButton(_tr("&Leave"), self)
        self.leave_button.setObjectName("leave")
        self.leave_button.setAccessibleName(_tr("Leave rounds"))
        self.leave_button.setToolTip(_tr("Stop taking part; nothing more is sent"))
        self.leave_button.clicked.connect(self._leave)
        self.busy = QLabel(self)
        self.busy.setObjectName("busy")
        controls.addWidget(self.join_button)
        controls.addWidget(self.leave_button)
        controls.addWidget(self.busy, 1)
        layout.addLayout(controls)

        self.notice = QLabel(self)
        self.notice.setObjectName("notice")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("QLabel#notice { color: #9b1c1c; }")
        self.notice.setAccessibleName(_tr("Message"))
        layout.addWidget(self.notice)

        columns = QHBoxLayout()
        left, right = QVBoxLayout(), QVBoxLayout()
        columns.addLayout(left, 2)
        columns.addLayout(right, 3)
        layout.addLayout(columns, 1)
        status_box = QGroupBox(_tr("Now"), self)
        form = QFormLayout(status_box)
        self.connection = self._value(status_box, "connection", _tr("Connection"))
        self.round = self._value(status_box, "round", _tr("Campaign and round"))
        self.budget = self._value(status_box, "budget", _tr("Privacy budget"))
        form.addRow(_tr("Connection:"), self.connection)
        form.addRow(_tr("Campaign and round:"), self.round)
        form.addRow(_tr("Privacy budget:"), self.budget)
        left.addWidget(status_box)

        chart_box = QGroupBox(_tr("Loss per round (lower is better)"), self)
        chart_layout = QVBoxLayout(chart_box)
        self.chart = pg.PlotWidget(parent=chart_box, background="w")
        self.chart.setObjectName("loss-chart")
        self.chart.setAccessibleName(_tr("Loss of the shared model on your held-out sales"))
        self.chart.setMinimumHeight(200)
        plot = self.chart.getPlotItem()
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setMenuEnabled(False)
        plot.setLabel("bottom", _tr("Round"))
        plot.setLabel("left", _tr("Loss"))
        plot.getAxis("left").enableAutoSIPrefix(False)  # losses read as they are, not x0.001
        plot.addLegend(offset=(-10, 10))  # top right, clear of the first rounds' points
        self._curves = [  # made once; the newest campaigns' losses are set on them
            plot.plot(
                [],
                [],
                pen=pg.mkPen(colour, width=2),
                symbol="o",
                symbolSize=6,
                symbolBrush=colour,
            )
            for colour in COLOURS[:CHART_RUNS]
        ]
        self.chart_empty = QLabel(_tr("No round has finished yet."), chart_box)
        self.chart_empty.setObjectName("chart-empty")
        chart_layout.addWidget(self.chart)
        chart_layout.addWidget(self.chart_empty)
        right.addWidget(chart_box, 3)

        log_box = QGroupBox(_tr("What the node did"), self)
        log_layout = QVBoxLayout(log_box)
        self.log = QPlainTextEdit(log_box)
        self.log.setObjectName("log")
        self.log.setReadOnly(True)
        self.log.setAccessibleName(_tr("Log of the node's recent events"))
        self.log.setPlaceholderText(_tr("Nothing has happened yet."))
        self.log.setMaximumBlockCount(LOG_SIZE)  # the oldest lines go as new ones come
        log_layout.addWidget(self.log)
        right.addWidget(log_box, 2)

        declines_box = QGroupBox(_tr("Rounds you did not take part in"), self)
        declines_layout = QVBoxLayout(declines_box)
        self.declines = QTreeWidget(declines_box)
        self.declines.setObjectName("declines")
        self.declines.setAccessibleName(_tr("Declined rounds and why"))
        self.declines.setRootIsDecorated(False)
        self.declines.setHeaderLabels([_tr("When"), _tr("Campaign"), _tr("Round"), _tr("Why")])
        declines_layout.addWidget(self.declines)
        self.declines_help = QLabel(declines_box)
        self.declines_help.setObjectName("declines-help")
        self.declines_help.setWordWrap(True)
        self.declines_help.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.declines_help.linkActivated.connect(self._open_link)
        declines_layout.addWidget(self.declines_help)
        left.addWidget(declines_box, 1)

        self.setTabOrder(self.join_button, self.leave_button)
        self.setTabOrder(self.leave_button, self.log)
        self.setTabOrder(self.log, self.declines)

        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    @staticmethod
    def _value(parent: QWidget, name: str, accessible: str) -> QLabel:
        label = QLabel(parent)
        label.setObjectName(name)
        label.setWordWrap(True)
        label.setAccessibleName(accessible)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        return label

    # -- page contract ---------------------------------------------------------------------

    @property
    def title(self) -> str:
        return _tr("Training")

    def refresh(self) -> None:
        """Shown: read the ledger's figures (in a child, unless read recently) and follow the
        stream."""
        self.model.refresh_status()
        self.poll()
        self.timer.start()

    def shutdown(self) -> None:
        """The window closes: stop polling; a running node keeps running (see view-model)."""
        self.timer.stop()
        self.model.shutdown()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self.timer.isActive():
            self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.timer.stop()  # hidden: no need to follow; refresh() catches up when shown

    # -- acting ----------------------------------------------------------------------------

    def poll(self) -> None:
        self.model.poll()
        self.draw(self.model.snapshot())

    def _join(self) -> None:
        passphrase = None
        if self.model.needs_passphrase():
            passphrase, given = QInputDialog.getText(
                self,
                _tr("Join rounds"),
                _tr("Passphrase that protects this node's key:"),
                QLineEdit.EchoMode.Password,
            )
            if not given:
                return
        self.model.join(passphrase)
        self.draw(self.model.snapshot())

    def _leave(self) -> None:
        self.model.leave()
        self.draw(self.model.snapshot())

    def _open_link(self, link: str) -> None:
        self.open_page_requested.emit(link.removeprefix("page:"))

    # -- drawing ---------------------------------------------------------------------------

    def draw(self, snap: TrainingSnapshot) -> None:
        if snap == self._drawn:
            return
        previous, self._drawn = self._drawn, snap
        if snap.guidance:
            link = _tr("Open the {page} page").format(page=_page_title(snap.guidance_page))
            self.guidance.setText(f'{snap.guidance} <a href="page:{snap.guidance_page}">{link}</a>')
        self.guidance.setVisible(bool(snap.guidance))
        self.join_button.setEnabled(snap.can_join)
        self.leave_button.setEnabled(snap.can_leave)
        self.busy.setText(
            {"joining": _tr("Joining…"), "leaving": _tr("Leaving…")}.get(snap.busy, "")
        )
        self.notice.setText(snap.notice)
        self.notice.setVisible(bool(snap.notice))
        self.connection.setText(snap.connection)
        self.round.setText(_round_text(snap))
        self.budget.setText(_budget_text(snap))
        if previous is None or previous.losses != snap.losses:
            self._draw_losses(snap.losses)
        self._draw_log(snap, 0 if previous is None else previous.log_total)
        if previous is None or previous.declines != snap.declines:
            self._draw_declines(snap)

    def _draw_log(self, snap: TrainingSnapshot, drawn: int) -> None:
        """Append only the new lines (a full redraw of the log each second would be wasted)."""
        new = snap.log_total - drawn
        if new <= 0 and drawn:
            return
        lines = [f"{e.at.astimezone():%d %b %H:%M:%S}  {e.text}" for e in snap.log]
        if drawn and new <= len(lines):
            for line in lines[-new:]:
                self.log.appendPlainText(line)
        else:
            self.log.setPlainText("\n".join(lines))
        self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())

    def _draw_losses(self, losses: tuple[LossPoint, ...]) -> None:
        """One line per recent campaign, drawn on the lines made with the page (creating a
        pyqtgraph line costs tens of ms on the GUI thread, just when a round's events come)."""
        plot = self.chart.getPlotItem()
        runs = sorted({p.run_id for p in losses})[-CHART_RUNS:]
        for curve, run in zip(self._curves, [*runs, *[None] * CHART_RUNS], strict=False):
            points = [p for p in losses if p.run_id == run]
            curve.setData([p.round for p in points], [p.loss for p in points])
            if plot.legend is not None:
                plot.legend.removeItem(curve)
                if run is not None:
                    plot.legend.addItem(curve, _tr("Campaign {run}").format(run=run))
        rounds = sorted({p.round for p in losses})
        axis = plot.getAxis("bottom")
        axis.setTicks([[(r, str(r)) for r in rounds]] if 0 < len(rounds) <= 20 else None)
        # the label keeps its place (only its text changes): the chart is not laid out again
        self.chart_empty.setText("" if losses else _tr("No round has finished yet."))

    def _draw_declines(self, snap: TrainingSnapshot) -> None:
        self.declines.clear()
        for decline in reversed(snap.declines[-50:]):
            item = QTreeWidgetItem(
                [
                    f"{decline.at.astimezone():%d %b %H:%M}",
                    "" if decline.run_id is None else str(decline.run_id),
                    "" if decline.round is None else str(decline.round),
                    _cause_text(decline.cause, decline.reason),
                ]
            )
            item.setToolTip(3, decline.reason)
            self.declines.addTopLevelItem(item)
        for column in (0, 1, 2):
            self.declines.resizeColumnToContents(column)
        causes = {d.cause for d in snap.declines}
        if causes & {"consent", "budget"} and not self.context.viewer:
            link = _tr("Check consent and budget on the Privacy page")
            self.declines_help.setText(f'<a href="page:{PRIVACY_PAGE}">{link}</a>')
        else:
            self.declines_help.setText("")
        self.declines_help.setVisible(bool(self.declines_help.text()))


def _page_title(key: str) -> str:
    titles = {
        "connect": QCoreApplication.translate("Pages", "Connect"),
        "data": QCoreApplication.translate("Pages", "Data"),
        "privacy": QCoreApplication.translate("Pages", "Privacy"),
    }
    return titles.get(key, key)


def _cause_text(cause: str, reason: str) -> str:
    if cause == "consent":
        return _tr("No consent: {reason}").format(reason=reason)
    if cause == "budget":
        return _tr("Privacy budget: {reason}").format(reason=reason.removeprefix("budget: "))
    return reason


def _round_text(snap: TrainingSnapshot) -> str:
    if snap.current_run is None:
        return _tr("No campaign yet")
    if snap.current_round:
        return _tr("Campaign {run}, round {round}").format(
            run=snap.current_run, round=snap.current_round
        )
    return _tr("Campaign {run}").format(run=snap.current_run)


def _budget_text(snap: TrainingSnapshot) -> str:
    if snap.epsilon_spent is None or snap.epsilon_cap is None:
        return _tr("Not known yet")
    remaining = max(snap.epsilon_cap - snap.epsilon_spent, 0.0)
    return _tr("ε {spent} spent of {cap} ({remaining} left)").format(
        spent=f"{snap.epsilon_spent:.2f}",
        cap=f"{snap.epsilon_cap:.2f}",
        remaining=f"{remaining:.2f}",
    )
