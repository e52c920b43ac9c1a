"""The Privacy page's logic: consent per task, the ε budget, spending per round, the cap, and
what the next round would cost.

Why here and not in the widgets: every figure comes from the node's privacy ledger (the
authority) and the project's accountant, and must read the same in tests as on screen. The
ledger file is only opened to read when it exists, so the store manager's read-only mode
never creates one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from desktop_client.viewmodels.data_files import CANONICAL_FILE, LEDGER_FILENAME
from shared.federation.settings import RunSettings
from shared.schema import Task

if TYPE_CHECKING:  # shared.privacy loads Opacus and torch: imported where used, off the GUI thread
    from shared.privacy import Mechanism, PrivacyLedger, ReleaseKind

CONSENT_HISTORY_FILE = "consent-history.jsonl"
MIN_SHOPS = 5  # secure aggregation sums at least this many shops (RunSettings.min_participants)

# What leaves the machine when the owner ticks each box: said plainly, and true for the code.
TASK_EXPLANATIONS: dict[Task, str] = {
    Task.DEMAND_PRICING: (
        "Your computer trains the shared demand and pricing model on your sales. Only a "
        "noise-protected model update leaves it, added up with at least {others} other shops "
        "by secure aggregation, so nobody (not even the coordinator) sees your update alone. "
        "Your sales rows never leave this computer."
    ),
    Task.FORECASTING: (
        "Forecasts are computed on this computer from your own sales and the shared model. "
        "Consenting lets rounds for forecasting use noise-protected model updates from your "
        "data, summed with at least {others} other shops; your rows never leave this computer."
    ),
    Task.BUNDLES: (
        "Your computer counts which product categories are bought together, adds random noise "
        "to the counts, and sends only those noisy counts, summed with at least {others} other "
        "shops by secure aggregation. Baskets, customers and rows never leave this computer."
    ),
}

# The campaign ε split, exactly as coordinator.campaign_runner.run_config_for makes it
# (a test checks the two agree): bundles take a quarter for the statistics round.
STATISTICS_SHARE = 0.25
MIN_ROUND_EPSILON = 0.05


class CapError(ValueError):
    """The cap asked for is not allowed; the message says which values are."""


def explanation(task: Task) -> str:
    return TASK_EXPLANATIONS[Task(task)].format(others=MIN_SHOPS - 1)


@dataclass(frozen=True)
class Budget:
    spent: float
    cap: float
    delta: float

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap - self.spent)

    @property
    def fraction_spent(self) -> float:
        return 0.0 if self.cap <= 0 else min(1.0, self.spent / self.cap)


@dataclass(frozen=True)
class RoundSpend:
    """One charged release and what it added to the composed ε."""

    release_id: str
    label: str  # "Run 3 round 2" or "Basket counts, run 3"
    task: Task
    added: float
    cumulative: float
    at: datetime


@dataclass(frozen=True)
class CampaignOffer:
    """A campaign the coordinator offers (as its API lists it)."""

    campaign_id: int
    status: str
    rounds: int
    epsilon: float
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class RoundCost:
    """What joining the next round would cost; ``known`` False means no campaign to price."""

    known: bool
    message: str
    added: float = 0.0
    epsilon_after: float = 0.0
    fits: bool = True


def round_settings(offer: CampaignOffer) -> RunSettings:
    """The per-round settings a node will receive for this campaign."""
    bundles = Task.BUNDLES.value in offer.tasks
    statistics = max(offer.epsilon * STATISTICS_SHARE, MIN_ROUND_EPSILON) if bundles else 0.0
    per_round = (offer.epsilon - statistics) / offer.rounds
    return RunSettings(
        rounds=offer.rounds, epsilon_per_round=per_round, statistics_epsilon=statistics
    )


def training_plan(frame: pd.DataFrame, settings: RunSettings) -> tuple[float, int]:
    """Sample rate and steps of one DP-SGD round on this data, as the node plans it
    (``NodeRuntime.plan`` over product-days of the training span, the first 80%)."""
    from shared.ingest import product_day

    days = product_day(frame)
    if len(days) == 0:
        return 1.0, settings.local_epochs
    dates = pd.to_datetime(days["date"])
    first, last = dates.min(), dates.max()
    cutoff = first + pd.Timedelta(days=math.floor((last - first).days * 0.8))
    examples = int((dates <= cutoff).sum())
    batches = max(1, round(examples / settings.batch_size))
    return 1.0 / batches, settings.local_epochs * batches


@dataclass(frozen=True)
class LedgerSnapshot:
    """Everything the page shows from the ledger, read in one go on a worker thread."""

    consents: dict[Task, bool]
    budget: Budget
    spending: list[RoundSpend]


class PrivacyViewModel:
    """Consent, budget and cap of one node's ledger, in the words the page shows."""

    def __init__(self, node_dir: Path) -> None:
        self.node_dir = Path(node_dir)

    @property
    def ledger_path(self) -> Path:
        return self.node_dir / LEDGER_FILENAME

    def _open(self) -> PrivacyLedger:
        from shared.privacy import PrivacyLedger

        return PrivacyLedger.in_data_dir(self.node_dir)

    def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(self.consents(), self.budget(), self.spending())

    # -- consent --------------------------------------------------------------------------

    def consents(self) -> dict[Task, bool]:
        if not self.ledger_path.exists():
            return {task: False for task in Task}
        with self._open() as ledger:
            return ledger.consents()

    def set_consent(self, task: Task, granted: bool) -> None:
        """Grant or withdraw in the ledger (the authority) and note it in the history."""
        task = Task(task)
        with self._open() as ledger:
            if ledger.has_consent(task) == granted:
                return
            if granted:
                ledger.grant_consent(task)
            else:
                ledger.withdraw_consent(task)
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "task": task.value,
            "granted": granted,
            "by": "desktop app",
        }
        self.node_dir.mkdir(parents=True, exist_ok=True)
        with (self.node_dir / CONSENT_HISTORY_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def consent_history(self) -> list[dict[str, object]]:
        path = self.node_dir / CONSENT_HISTORY_FILE
        if not path.exists():
            return []
        out: list[dict[str, object]] = []
        for line in path.read_text("utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(entry, dict):
                out.append(entry)
        return out

    # -- budget ---------------------------------------------------------------------------

    def budget(self) -> Budget:
        if not self.ledger_path.exists():
            from shared.privacy import DEFAULT_DELTA, LIFETIME_EPSILON_CAP

            return Budget(0.0, LIFETIME_EPSILON_CAP, DEFAULT_DELTA)
        with self._open() as ledger:
            status = ledger.status()
        return Budget(status.spent_epsilon, status.total_epsilon, status.delta)

    def spending(self) -> list[RoundSpend]:
        """Every charged release, oldest first, with the ε it added (for the bar chart)."""
        if not self.ledger_path.exists():
            return []
        from shared.privacy import ReleaseState

        with self._open() as ledger:
            releases = ledger.status().releases
        out: list[RoundSpend] = []
        previous = 0.0
        for record in releases:
            if record.state is ReleaseState.ABORTED or record.cumulative_epsilon is None:
                continue
            out.append(
                RoundSpend(
                    record.release_id,
                    _label(record.release_id, record.kind),
                    record.task,
                    max(0.0, record.cumulative_epsilon - previous),
                    record.cumulative_epsilon,
                    record.created_at,
                )
            )
            previous = record.cumulative_epsilon
        return out

    def lower_cap(self, new_cap: float) -> Budget:
        """Lower the lifetime cap; the app never raises it and never below what is spent."""
        budget = self.budget()
        if not math.isfinite(new_cap) or new_cap <= 0:
            raise CapError("the cap must be a positive number")
        if new_cap > budget.cap + 1e-12:
            raise CapError(
                f"ε {new_cap:g} is above your current cap of {budget.cap:g}; the app only "
                "lowers the cap"
            )
        if new_cap < budget.spent:
            raise CapError(
                f"ε {new_cap:g} is below the ε {budget.spent:.3g} already spent; choose at "
                f"least {budget.spent:.3g}"
            )
        with self._open() as ledger:
            ledger.lower_cap(new_cap)
        return self.budget()

    # -- the next round -------------------------------------------------------------------

    def next_round_cost(self, offer: CampaignOffer | None) -> RoundCost:
        """The ε the next round of ``offer`` would add, with the project's accountant.

        The round's noise is calibrated (as the node does when asked to join) so that the
        composed ε rises by the campaign's per-round ε; with bundles consent the first round
        also pays for the noisy basket counts."""
        if offer is None:
            return RoundCost(False, "unknown until a campaign is offered")
        from shared.privacy import Mechanism, calibrate_noise_multiplier, epsilon

        settings = round_settings(offer)
        consent = self.consents()
        budget = self.budget()
        if not consent[Task(settings.task)]:
            return RoundCost(
                True,
                f"nothing: without consent for {Task(settings.task).label} this node declines "
                "the round",
                epsilon_after=budget.spent,
            )
        canonical = self.node_dir / CANONICAL_FILE
        if not canonical.is_file():
            return RoundCost(
                False, "unknown until your data is prepared (Data page, Use this data)"
            )
        frame = pd.read_parquet(canonical, columns=_PLAN_COLUMNS)
        sample_rate, steps = training_plan(frame, settings)
        history = self._history()
        planned: list[Mechanism] = []
        try:
            if settings.statistics_epsilon > 0 and consent[Task.BUNDLES]:
                sigma = calibrate_noise_multiplier(
                    settings.statistics_epsilon, budget.delta, 1.0, 1, history, cap_epsilon=None
                )
                planned.append(Mechanism.gaussian(sigma))
            sigma = calibrate_noise_multiplier(
                settings.epsilon_per_round,
                budget.delta,
                sample_rate,
                steps,
                [*history, *planned],
                cap_epsilon=None,
            )
            planned.append(Mechanism(sigma, sample_rate, steps))
        except ValueError as exc:
            return RoundCost(True, f"this round cannot be priced: {exc}", fits=False)
        after = epsilon([*history, *planned], budget.delta)
        added = after - budget.spent
        fits = after <= budget.cap
        verdict = "fits your budget" if fits else "above your cap: the node will decline it"
        return RoundCost(
            True,
            f"ε {added:.3f} (campaign #{offer.campaign_id}); ε would be {after:.3f} of "
            f"{budget.cap:g}: {verdict}",
            added=added,
            epsilon_after=after,
            fits=fits,
        )

    def _history(self) -> list[Mechanism]:
        if not self.ledger_path.exists():
            return []
        from shared.privacy import Mechanism, ReleaseState

        with self._open() as ledger:
            releases = ledger.status().releases
        return [
            Mechanism(r.noise_multiplier, r.sample_rate, r.steps)
            for r in releases
            if r.state is not ReleaseState.ABORTED
        ]


_PLAN_COLUMNS = ["product_id", "timestamp", "quantity_sold", "price"]


def _label(release_id: str, kind: ReleaseKind) -> str:
    """'run:7/round:2/task:demand_pricing' -> 'Run 7, round 2' (counts: 'Run 7, basket counts')."""
    parts = dict(part.split(":", 1) for part in release_id.split("/") if ":" in part)
    run = parts.get("run", "?")
    if kind.value == "count" or parts.get("round") == "0":
        return f"Run {run}, basket counts"
    return f"Run {run}, round {parts.get('round', '?')}"
