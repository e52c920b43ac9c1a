"""The Insights page: pricing, forecasts, bundles, market trends and the value of collaboration.

A thin view over the insight view-models: every number comes from the node's local insight
store (so store managers read it offline, in view-only mode) and every view says which model
and which computation it shows. Only the owner gets "Refresh insights", which runs
``retail-node insights refresh`` as a child process: the window never imports torch.
"""

from __future__ import annotations

from PySide6.QtCore import QProcess, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_client.gui import charts
from desktop_client.gui.context import AppContext
from desktop_client.viewmodels import insights_forecast as forecast_vm
from desktop_client.viewmodels import insights_market as market_vm
from desktop_client.viewmodels import insights_pricing as pricing_vm
from desktop_client.viewmodels.insights import InsightsViewModel, KindState
from desktop_client.viewmodels.insights_qtmodel import TableModel
from desktop_client.viewmodels.insights_refresh import (
    RefreshOutcome,
    refresh_command,
    refresh_outcome,
)
from desktop_client.viewmodels.insights_tables import Table


def _label(text: str = "", *, name: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setWordWrap(True)
    label.setAccessibleName(name)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _table_view(model: TableModel, *, name: str, parent: QWidget) -> QTableView:
    view = QTableView(parent)
    view.setModel(model)
    view.setAccessibleName(name)
    view.setSortingEnabled(True)
    # Rows start in the engine's order (best first), with no column claiming to be sorted.
    view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setAlternatingRowColors(True)
    view.setTabKeyNavigation(False)  # Tab leaves the table, arrows move inside it
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    view.horizontalHeader().setStretchLastSection(True)
    view.verticalHeader().setVisible(False)
    return view


class KindTab(QWidget):
    """One insight kind: which computation (history), where it came from, and its content;
    a plain sentence replaces the content when there is nothing to show."""

    def __init__(self, kind: str, view_model: InsightsViewModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.kind = kind
        self.view_model = view_model
        self.state: KindState = KindState(kind, None)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.history = QComboBox(self)
        self.history.setAccessibleName(self.tr("Which computation to show"))
        self.history.setToolTip(self.tr("Earlier computations are kept; pick one to compare."))
        history_label = QLabel(self.tr("&Computation:"), self)
        history_label.setBuddy(self.history)
        top.addWidget(history_label)
        top.addWidget(self.history, 1)
        layout.addLayout(top)
        self.provenance = _label(name=self.tr("Model version and date"), parent=self)
        layout.addWidget(self.provenance)
        self.message = _label(name=self.tr("Message"), parent=self)
        self.message.setStyleSheet("font-size: 14px; color: #444; padding: 12px;")
        layout.addWidget(self.message)
        self.content = QWidget(self)
        layout.addWidget(self.content, 1)
        self.history.activated.connect(self._history_chosen)

    def reload(self) -> None:
        """Show the newest computation and list the history."""
        entries = self.view_model.history(self.kind)
        self.history.blockSignals(True)
        self.history.clear()
        for entry in entries:
            self.history.addItem(entry.label(), entry.batch_id)
        self.history.blockSignals(False)
        self.history.setEnabled(len(entries) > 1)
        self.show_state(self.view_model.state(self.kind))

    @Slot(int)
    def _history_chosen(self, index: int) -> None:
        batch_id = self.history.itemData(index)
        if isinstance(batch_id, int):
            self.show_state(self.view_model.state(self.kind, batch_id))

    def show_batch(self, batch_id: int) -> None:
        """Show an earlier computation (what choosing it in the history box does)."""
        index = self.history.findData(batch_id)
        if index >= 0:
            self.history.setCurrentIndex(index)
            self._history_chosen(index)

    def show_state(self, state: KindState) -> None:
        self.state = state
        provenance = state.provenance
        self.provenance.setText(provenance.text() if provenance else "")
        self.provenance.setVisible(provenance is not None)
        self.message.setText(state.message)
        self.message.setVisible(bool(state.message))
        self.content.setVisible(state.has_rows)
        if state.has_rows:
            self.fill()

    def fill(self) -> None:
        """Draw ``self.state.batch`` (it has rows); each tab draws its own kind."""
        raise NotImplementedError


class PricingTab(KindTab):
    """Recommendation table; the selected product's demand and revenue what-if curves."""

    def __init__(self, view_model: InsightsViewModel, parent: QWidget | None = None) -> None:
        super().__init__("pricing", view_model, parent)
        self.model = TableModel(parent=self)
        self.curve: pricing_vm.PriceCurve | None = None
        layout = QVBoxLayout(self.content)
        layout.setContentsMargins(0, 0, 0, 0)
        splitter = QSplitter(Qt.Orientation.Vertical, self.content)
        self.table = _table_view(self.model, name=self.tr("Price recommendations"), parent=self)
        splitter.addWidget(self.table)
        charts_box = QWidget(splitter)
        charts_layout = QHBoxLayout(charts_box)
        charts_layout.setContentsMargins(0, 0, 0, 0)
        self.units_plot = charts.make_plot(
            self.tr("Expected units by price for the selected product"),
            x_label=self.tr("price"),
            y_label=self.tr("units"),
            parent=charts_box,
        )
        self.money_plot = charts.make_plot(
            self.tr("Expected revenue and margin by price for the selected product"),
            x_label=self.tr("price"),
            y_label=self.tr("per period"),
            parent=charts_box,
        )
        charts_layout.addWidget(self.units_plot)
        charts_layout.addWidget(self.money_plot)
        splitter.addWidget(charts_box)
        layout.addWidget(splitter, 1)
        self.caption = _label(name=self.tr("About the price curve"), parent=self.content)
        layout.addWidget(self.caption)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)

    def fill(self) -> None:
        batch = self.state.batch
        assert batch is not None  # noqa: S101 - fill() is only called with rows
        self.model.set_table(pricing_vm.pricing_table(batch))
        self.table.resizeColumnsToContents()
        if self.model.rowCount() > 0:
            self.table.selectRow(0)
            self._row_changed(self.model.index(0, 0))

    def select_product(self, product_id: str) -> bool:
        row = self.model.row_of(product_id)
        if row is None:
            return False
        self.table.selectRow(row)
        self.table.setCurrentIndex(self.model.index(row, 0))
        return True

    def selected_product(self) -> str | None:
        return self.model.row_id(self.table.currentIndex().row())

    @Slot(object)
    def _row_changed(self, current: object) -> None:
        product = self.selected_product()
        batch = self.state.batch
        curve = pricing_vm.curve_for(batch, product) if batch and product else None
        self.curve = curve
        self._draw(curve, product or "")

    def _draw(self, curve: pricing_vm.PriceCurve | None, product: str) -> None:
        charts.clear(self.units_plot, self.tr("{product}: expected units").format(product=product))
        title = self.tr("{product}: revenue").format(product=product)
        if curve is not None and curve.margin is not None:
            title = self.tr("{product}: revenue and margin").format(product=product)
        charts.clear(self.money_plot, title)
        if curve is None:
            self.caption.setText(
                self.tr("No price curve for this product: its stored row lacks the numbers.")
            )
            return
        xs = list(curve.prices)
        charts.band(self.units_plot, xs, curve.units_low, curve.units_high)
        charts.line(self.units_plot, xs, curve.units, name=self.tr("units"))
        charts.band(self.money_plot, xs, curve.revenue_low, curve.revenue_high)
        charts.line(self.money_plot, xs, curve.revenue, name=self.tr("revenue"))
        if curve.margin is not None:
            charts.line(
                self.money_plot,
                xs,
                curve.margin,
                name=self.tr("margin"),
                colour=charts.PALETTE[2],
                dashed=True,
            )
        for plot in (self.units_plot, self.money_plot):
            charts.marker(plot, curve.current_price, self.tr("now"))
            charts.marker(plot, curve.recommended_price, self.tr("recommended"), "#2ca02c")
        self.caption.setText(pricing_vm.curve_caption(curve))


class ForecastTab(KindTab):
    """One product's or category's forecast at the chosen horizon, with its interval band."""

    def __init__(self, view_model: InsightsViewModel, parent: QWidget | None = None) -> None:
        super().__init__("forecast", view_model, parent)
        self.series: forecast_vm.ForecastSeries | None = None
        layout = QVBoxLayout(self.content)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.choice = QComboBox(self.content)
        self.choice.setAccessibleName(self.tr("Product or category to forecast"))
        self.horizon = QComboBox(self.content)
        self.horizon.setAccessibleName(self.tr("Forecast horizon"))
        form.addRow(self.tr("&Forecast for:"), self.choice)
        form.addRow(self.tr("&Horizon:"), self.horizon)
        layout.addLayout(form)
        self.plot = charts.make_plot(
            self.tr("Forecast chart with its interval"),
            x_label=self.tr("period start"),
            y_label=self.tr("units"),
            parent=self.content,
        )
        layout.addWidget(self.plot, 1)
        self.caption = _label(name=self.tr("About the forecast"), parent=self.content)
        layout.addWidget(self.caption)
        self.choice.currentIndexChanged.connect(self._choice_changed)
        self.horizon.currentIndexChanged.connect(self._draw)

    def fill(self) -> None:
        batch = self.state.batch
        assert batch is not None  # noqa: S101 - fill() is only called with rows
        previous = self.choice.currentData()
        self.choice.blockSignals(True)
        self.choice.clear()
        for choice in forecast_vm.choices(batch):
            self.choice.addItem(choice.label(), choice)
        self.choice.blockSignals(False)
        index = self.choice.findData(previous) if previous is not None else -1
        self.choice.setCurrentIndex(max(index, 0))
        self._choice_changed()

    @Slot()
    def _choice_changed(self) -> None:
        batch, choice = self.state.batch, self.choice.currentData()
        wanted = self.horizon.currentData() or "weekly"
        self.horizon.blockSignals(True)
        self.horizon.clear()
        if batch is not None and isinstance(choice, forecast_vm.ForecastChoice):
            for horizon in forecast_vm.horizons(batch, choice):
                self.horizon.addItem(forecast_vm.horizon_label(horizon), horizon)
        self.horizon.blockSignals(False)
        self.horizon.setCurrentIndex(max(self.horizon.findData(wanted), 0))
        self._draw()

    @Slot()
    def _draw(self) -> None:
        batch, choice = self.state.batch, self.choice.currentData()
        horizon = self.horizon.currentData()
        found = None
        if batch is not None and isinstance(choice, forecast_vm.ForecastChoice) and horizon:
            found = forecast_vm.series(batch, choice, str(horizon))
        self.series = found
        if found is None:
            charts.clear(self.plot)
            self.caption.setText(self.tr("No forecast stored for this choice."))
            return
        charts.clear(
            self.plot, f"{found.choice.label()} — {forecast_vm.horizon_label(found.horizon)}"
        )
        xs = [float(i) for i in range(len(found.predicted))]
        charts.band(self.plot, xs, found.lower, found.upper)
        charts.line(self.plot, xs, found.predicted, name=self.tr("forecast"))
        charts.category_ticks(self.plot, [s[:10] for s in found.period_starts])
        self.caption.setText(found.caption())


class BundlesTab(KindTab):
    def __init__(self, view_model: InsightsViewModel, parent: QWidget | None = None) -> None:
        super().__init__("bundles", view_model, parent)
        self.model = TableModel(parent=self)
        layout = QVBoxLayout(self.content)
        layout.setContentsMargins(0, 0, 0, 0)
        self.summary = _label(name=self.tr("Bundle summary"), parent=self.content)
        layout.addWidget(self.summary)
        self.table = _table_view(self.model, name=self.tr("Bundle suggestions"), parent=self)
        layout.addWidget(self.table, 1)

    def fill(self) -> None:
        batch = self.state.batch
        assert batch is not None  # noqa: S101 - fill() is only called with rows
        self.model.set_table(market_vm.bundles_table(batch))
        self.table.resizeColumnsToContents()
        fresh = market_vm.new_product_suggestions(batch)
        text = self.tr(
            "{count} bundles suggested from what shoppers across the market buy together."
        ).format(count=len(batch.rows))
        if fresh:
            text += " " + self.tr("{count} of them include a new product.").format(count=fresh)
        self.summary.setText(text)


class TrendsTab(KindTab):
    def __init__(self, view_model: InsightsViewModel, parent: QWidget | None = None) -> None:
        super().__init__("trends", view_model, parent)
        self.published: list[market_vm.TrendSeries] = []
        self.withheld_model = TableModel(parent=self)
        layout = QVBoxLayout(self.content)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.category = QComboBox(self.content)
        self.category.setAccessibleName(self.tr("Category to compare with the market"))
        form.addRow(self.tr("C&ategory:"), self.category)
        layout.addLayout(form)
        self.plot = charts.make_plot(
            self.tr("Weekly market index and this shop's index"),
            x_label=self.tr("week"),
            y_label=self.tr("index (100 = average week)"),
            parent=self.content,
        )
        layout.addWidget(self.plot, 2)
        self.caption = _label(name=self.tr("About the trend"), parent=self.content)
        layout.addWidget(self.caption)
        self.withheld_title = _label(name=self.tr("Withheld categories"), parent=self.content)
        layout.addWidget(self.withheld_title)
        self.withheld = _table_view(
            self.withheld_model, name=self.tr("Withheld categories and why"), parent=self
        )
        layout.addWidget(self.withheld, 1)
        self.category.currentIndexChanged.connect(self._draw)

    def fill(self) -> None:
        batch = self.state.batch
        assert batch is not None  # noqa: S101 - fill() is only called with rows
        self.published = market_vm.trend_series(batch)
        self.category.blockSignals(True)
        self.category.clear()
        for trend in self.published:
            self.category.addItem(trend.category, trend.category)
        self.category.blockSignals(False)
        self.category.setEnabled(bool(self.published))
        table: Table = market_vm.withheld_table(batch)
        self.withheld_model.set_table(table)
        self.withheld.setVisible(bool(table.rows))
        self.withheld_title.setText(
            self.tr("Withheld categories: not published, to protect the shops that contributed.")
            if table.rows
            else self.tr("No category was withheld.")
        )
        self.category.setCurrentIndex(0 if self.published else -1)
        self._draw()

    def current(self) -> market_vm.TrendSeries | None:
        index = self.category.currentIndex()
        return self.published[index] if 0 <= index < len(self.published) else None

    @Slot()
    def _draw(self) -> None:
        trend = self.current()
        if trend is None:
            charts.clear(self.plot)
            self.caption.setText(
                self.tr("No category had enough contributing shops to publish a market trend.")
            )
            return
        charts.clear(self.plot, trend.category)
        xs = [float(i) for i in range(len(trend.weeks))]
        charts.line(self.plot, xs, trend.market, name=self.tr("market"))
        if trend.has_own:
            charts.line(
                self.plot,
                xs[: len(trend.own)],
                trend.own,
                name=self.tr("this shop"),
                colour=charts.PALETTE[1],
                dashed=True,
            )
        charts.category_ticks(self.plot, [w[:10] for w in trend.weeks])
        self.caption.setText(trend.caption())


class ValueTab(KindTab):
    def __init__(self, view_model: InsightsViewModel, parent: QWidget | None = None) -> None:
        super().__init__("value", view_model, parent)
        layout = QVBoxLayout(self.content)
        layout.setContentsMargins(0, 0, 0, 0)
        self.sentence = _label(name=self.tr("Value of collaboration"), parent=self.content)
        self.sentence.setStyleSheet("font-size: 16px; font-weight: 600; color: #1a4d80;")
        layout.addWidget(self.sentence)
        self.plot = charts.make_plot(
            self.tr("Forecast error with your data alone and with the federation"),
            y_label=self.tr("error (WAPE)"),
            parent=self.content,
        )
        layout.addWidget(self.plot, 1)
        self.detail = _label(name=self.tr("About the comparison"), parent=self.content)
        layout.addWidget(self.detail)

    def fill(self) -> None:
        batch = self.state.batch
        assert batch is not None  # noqa: S101 - fill() is only called with rows
        values = market_vm.collaboration_values(batch)
        first = values[0]
        self.sentence.setText(first.sentence)
        charts.clear(self.plot, self.tr("Forecast error on held-out days (lower is better)"))
        charts.bars(self.plot, first.bars())
        self.detail.setText(first.detail())


class InsightsPage(QWidget):
    """Every insight kind in a tab; the owner may also recompute them."""

    refresh_finished = Signal(bool, str)

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.view_model = InsightsViewModel(context.node_dir)
        self.process: QProcess | None = None
        layout = QVBoxLayout(self)
        self.refresh_button: QPushButton | None = None
        self.status = _label(name=self.tr("Insights status"), parent=self)
        if not context.viewer:
            bar = QHBoxLayout()
            button = QPushButton(self.tr("&Refresh insights"), self)
            button.setAccessibleName(self.tr("Refresh insights"))
            button.setToolTip(
                self.tr("Recompute every insight from your data and the latest shared model.")
            )
            button.clicked.connect(self.start_refresh)
            bar.addWidget(button)
            bar.addWidget(self.status, 1)
            layout.addLayout(bar)
            self.refresh_button = button
        else:
            layout.addWidget(self.status)
            self.status.setText(self.tr("View-only: insights as last computed on this computer."))
        self.tabs = QTabWidget(self)
        self.tabs.setAccessibleName(self.tr("Insight kinds"))
        self.pricing = PricingTab(self.view_model, self.tabs)
        self.forecast = ForecastTab(self.view_model, self.tabs)
        self.bundles = BundlesTab(self.view_model, self.tabs)
        self.trends = TrendsTab(self.view_model, self.tabs)
        self.value = ValueTab(self.view_model, self.tabs)
        self.tabs.addTab(self.pricing, self.tr("&Pricing"))
        self.tabs.addTab(self.forecast, self.tr("F&orecasts"))
        self.tabs.addTab(self.bundles, self.tr("&Bundles"))
        self.tabs.addTab(self.trends, self.tr("&Market trends"))
        self.tabs.addTab(self.value, self.tr("&Value of collaboration"))
        layout.addWidget(self.tabs, 1)
        context.signals.insights_changed.connect(self.refresh)

    @property
    def title(self) -> str:
        return self.tr("Insights")

    def kind_tabs(self) -> list[KindTab]:
        return [self.pricing, self.forecast, self.bundles, self.trends, self.value]

    @Slot()
    def refresh(self) -> None:
        """Re-read the store (cheap: one SQLite read per kind)."""
        for tab in self.kind_tabs():
            tab.reload()

    @Slot()
    def start_refresh(self) -> None:
        """Owner only: recompute in a child process; the page stays usable meanwhile."""
        if self.context.viewer or self.process is not None:
            return
        command = refresh_command(self.context.node_dir)
        process = QProcess(self)
        process.setProgram(command.program)
        process.setArguments(list(command.arguments))
        process.finished.connect(self._refresh_done)
        process.errorOccurred.connect(self._refresh_error)
        self.process = process
        if self.refresh_button is not None:
            self.refresh_button.setEnabled(False)
        self.status.setText(
            self.tr("Refreshing insights… this takes a minute or two; you can keep working.")
        )
        process.start()

    @Slot(int, QProcess.ExitStatus)
    def _refresh_done(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        process = self.process
        if process is None:
            return
        stdout = bytes(process.readAllStandardOutput().data()).decode("utf-8", "replace")
        code = exit_code if status == QProcess.ExitStatus.NormalExit else -1
        self._finish(refresh_outcome(code, stdout))

    @Slot(QProcess.ProcessError)
    def _refresh_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.process is not None:
            self._finish(refresh_outcome(-1, ""))

    def _finish(self, outcome: RefreshOutcome) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.deleteLater()
        if self.refresh_button is not None:
            self.refresh_button.setEnabled(True)
        self.status.setText(outcome.message)
        if outcome.ok:
            self.context.signals.insights_changed.emit()  # also refreshes this page
        self.refresh_finished.emit(outcome.ok, outcome.message)
