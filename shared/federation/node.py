"""A retailer node's side of a federated round, without Flower: decide, train, release, evaluate.

The ledger is the authority. A round is only joined after the participation query found consent
and budget; the charge is written (write-ahead) before training starts, the released update is
kept on disk under its release id, and a retried round re-sends that same update instead of
training again, so a retry never costs privacy twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.federation.codec import encode_statistics, encode_update
from shared.federation.settings import RunSettings
from shared.privacy import Decline, LedgerError, PrivacyLedger, release_id_for
from shared.schema import Task

log = logging.getLogger(__name__)

CANONICAL_FILE = "canonical.parquet"
NODE_FILE = "node.json"
MIN_TRAINING_EXAMPLES = 200
MARKET_FILE = Path("market") / "statistics.json"
# Round number under which a campaign's basket statistics are released (training rounds are 1..R).
STATISTICS_ROUND = 0


@dataclass(frozen=True)
class Answer:
    """The node's reply to a participation query: joins or declines, always with a reason."""

    accept: bool
    reason: str
    examples: int = 0
    noise_multiplier: float = 0.0
    sample_rate: float = 0.0
    steps: int = 0
    epsilon_spent: float = 0.0
    epsilon_after: float = 0.0
    epsilon_cap: float = 0.0
    app_version: str = ""

    def to_properties(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Released:
    """What leaves the node for one round: the encoded update, its weight and plain metrics."""

    arrays: list[np.ndarray]
    weight: int
    metrics: dict[str, float]


def prepare_node(
    node_dir: Path, frame: pd.DataFrame, name: str, consent: tuple[Task, ...] = ()
) -> Path:
    """Lay out a node directory from a canonical frame; consent is recorded in the ledger."""
    node_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(node_dir / CANONICAL_FILE, index=False)
    (node_dir / NODE_FILE).write_text(json.dumps({"name": name}), "utf-8")
    ledger = PrivacyLedger.in_data_dir(node_dir)
    for task in consent:
        ledger.grant_consent(task)
    return node_dir


class NodeRuntime:
    """One node's data, model state and ledger, loaded once per process."""

    def __init__(self, node_dir: Path) -> None:
        from shared.model import DemandModel, build_examples, chronological_split

        self.node_dir = node_dir
        self.name = str(json.loads((node_dir / NODE_FILE).read_text("utf-8"))["name"])
        frame = pd.read_parquet(node_dir / CANONICAL_FILE)
        self._frame: pd.DataFrame | None = None  # re-read when basket statistics need it
        self.train_data, self.holdout = chronological_split(build_examples(frame, self.name))
        self.model = DemandModel(self.train_data.product_ids, node=self.name)
        self.ledger = PrivacyLedger.in_data_dir(node_dir)
        self._updates = node_dir / "released"
        self._load_local_state()

    # -- plan ------------------------------------------------------------------------------

    def plan(self, settings: RunSettings) -> tuple[float, int]:
        """Poisson sample rate and step count of one round's DP-SGD on this node's data."""
        examples = len(self.train_data)
        batches = max(1, round(examples / settings.batch_size))
        return 1.0 / batches, settings.local_epochs * batches

    def participation(
        self, settings: RunSettings, campaign: str | None = None, server_round: int | None = None
    ) -> Answer:
        """Consent, data and budget for the planned round; nothing is charged here.

        A retried round whose update this node already released is joined at no cost: the node
        will re-send those bytes, so the budget check is for a new release only.
        """
        task = Task(settings.task)
        budget = self.ledger.status()  # one composition of the history gives both figures
        spent, cap = budget.spent_epsilon, budget.total_epsilon
        base = Answer(
            False, "", epsilon_spent=spent, epsilon_cap=cap, app_version=settings.app_version
        )
        if not self.ledger.has_consent(task):
            return replace(base, reason=f"no consent for {task.label}")
        if campaign is not None and server_round is not None:
            kept = self._cached(release_id_for(campaign, server_round, task))
            if kept is not None:
                return replace(
                    base,
                    accept=True,
                    reason="re-sends the update already released for this round",
                    examples=len(self.train_data),
                    epsilon_after=spent,
                )
        examples = len(self.train_data)
        if examples < MIN_TRAINING_EXAMPLES:
            return replace(
                base,
                reason=f"not enough data: {examples} product-days, {MIN_TRAINING_EXAMPLES} needed",
                examples=examples,
            )
        sample_rate, steps = self.plan(settings)
        try:
            noise = self.ledger.calibrate(settings.epsilon_per_round, sample_rate, steps)
        except LedgerError as exc:
            return replace(base, reason=f"budget: {exc}", examples=examples)
        quote = self.ledger.quote(task, noise, sample_rate, steps)
        if not quote.fits:
            return replace(
                base,
                reason=f"budget: this round would bring ε to {quote.epsilon_after:.2f}, above the "
                f"cap of {quote.cap_epsilon:.2f}",
                examples=examples,
            )
        return replace(
            base,
            accept=True,
            reason="joins",
            examples=examples,
            noise_multiplier=noise,
            sample_rate=sample_rate,
            steps=steps,
            epsilon_after=quote.epsilon_after,
        )

    # -- train -----------------------------------------------------------------------------

    def train(
        self, settings: RunSettings, run_id: str, server_round: int, global_arrays: list[np.ndarray]
    ) -> Released:
        """Reserve, train with DP-SGD, keep and release the update; a retry re-sends it."""
        from shared.model import train_private

        task = Task(settings.task)
        answer = self.participation(settings)
        release_id = release_id_for(run_id, server_round, task)
        cached = self._cached(release_id)
        if cached is not None:
            log.info("round %s retried: re-sending the update already released", server_round)
            return cached
        if not answer.accept:
            raise RefusedRound(answer.reason)
        reservation = self.ledger.reserve(
            release_id, task, answer.noise_multiplier, answer.sample_rate, answer.steps
        )
        if isinstance(reservation, Decline):
            raise RefusedRound(reservation.reason)
        self.model.set_federated_parameters(global_arrays)
        start = [a.copy() for a in global_arrays]
        try:
            mechanism = train_private(
                self.model,
                self.train_data,
                noise_multiplier=answer.noise_multiplier,
                max_grad_norm=settings.max_grad_norm,
                sample_rate=answer.sample_rate,
                epochs=settings.local_epochs,
                lr=settings.learning_rate,
                proximal_mu=settings.proximal_mu if settings.strategy == "fedprox" else 0.0,
            )
        except Exception:
            self.ledger.abort(release_id)  # nothing left the node: the charge is released
            raise
        delta = [
            new - old for new, old in zip(self.model.federated_parameters(), start, strict=True)
        ]
        released = Released(
            arrays=encode_update(delta, settings.update_clip),
            weight=min(len(self.train_data), settings.max_weight),
            metrics={
                "epsilon_after": reservation.epsilon_after,
                "noise_multiplier": mechanism.noise_multiplier,
                "sample_rate": mechanism.sample_rate,
                "steps": float(mechanism.steps),
            },
        )
        self._keep(release_id, released)  # kept before it leaves: a retry re-sends these bytes
        self.ledger.commit(release_id)
        self._save_local_state()
        return released

    # -- basket statistics (bundles, trends) -----------------------------------------------

    def statistics_participation(self, settings: RunSettings, campaign: str | None) -> Answer:
        """Consent for bundles, baskets to count and budget for one Gaussian count release."""
        from shared.insights.basket_stats import NoBasketsError, basket_keys

        task = Task.BUNDLES
        budget = self.ledger.status()
        spent, cap = budget.spent_epsilon, budget.total_epsilon
        base = Answer(
            False, "", epsilon_spent=spent, epsilon_cap=cap, app_version=settings.app_version
        )
        if not self.ledger.has_consent(task):
            return replace(base, reason=f"no consent for {task.label}")
        if settings.statistics_epsilon <= 0:
            return replace(base, reason="this campaign collects no basket statistics")
        if campaign is not None:
            kept = self._cached(release_id_for(campaign, STATISTICS_ROUND, task))
            if kept is not None:
                return replace(
                    base, accept=True, reason="re-sends the statistics already released",
                    epsilon_after=spent,
                )  # fmt: skip
        try:
            baskets = basket_keys(self.frame).nunique()
        except NoBasketsError as exc:
            return replace(base, reason=str(exc))
        try:
            noise = self.ledger.calibrate(settings.statistics_epsilon, 1.0, 1)
        except LedgerError as exc:
            return replace(base, reason=f"budget: {exc}", examples=baskets)
        quote = self.ledger.quote(task, noise, 1.0, 1)
        if not quote.fits:
            return replace(
                base,
                reason=f"budget: basket statistics would bring ε to {quote.epsilon_after:.2f}, "
                f"above the cap of {quote.cap_epsilon:.2f}",
                examples=baskets,
            )
        return replace(
            base,
            accept=True,
            reason="joins",
            examples=baskets,
            noise_multiplier=noise,
            sample_rate=1.0,
            steps=1,
            epsilon_after=quote.epsilon_after,
        )

    def release_statistics(self, settings: RunSettings, campaign: str) -> Released:
        """Count, bound and noise this shop's baskets; charged write-ahead, re-sent on retry."""
        from shared.insights.basket_stats import add_noise, count_baskets

        task = Task.BUNDLES
        release_id = release_id_for(campaign, STATISTICS_ROUND, task)
        cached = self._cached(release_id)
        if cached is not None:
            return cached
        answer = self.statistics_participation(settings, campaign)
        if not answer.accept:
            raise RefusedRound(answer.reason)
        reservation = self.ledger.reserve_count(release_id, task, answer.noise_multiplier)
        if isinstance(reservation, Decline):
            raise RefusedRound(reservation.reason)
        try:
            # The window must not depend on the data (see strategy.trend_end): yesterday if unset.
            end = (
                date.fromisoformat(settings.trend_end)
                if settings.trend_end
                else date.today() - timedelta(days=1)
            )
            exact = count_baskets(self.frame, end=end)
            noised = add_noise(exact, answer.noise_multiplier, np.random.default_rng())
        except Exception:
            self.ledger.abort(release_id)
            raise
        released = Released(
            arrays=encode_statistics(noised.vector()),
            weight=settings.max_weight,  # equal weights: SecAgg+'s mean times n is the sum
            metrics={
                "epsilon_after": reservation.epsilon_after,
                "noise_multiplier": answer.noise_multiplier,
            },
        )
        self._keep(release_id, released)
        self.ledger.commit(release_id)
        return released

    def receive_market(self, text: str) -> None:
        """Keep the published market statistics for bundles and trends (checked, then saved)."""
        from shared.insights.market import MarketStatistics

        MarketStatistics.from_json(text)
        path = self.node_dir / MARKET_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(path)

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.read_parquet(self.node_dir / CANONICAL_FILE)
        return self._frame

    # -- evaluate --------------------------------------------------------------------------

    def evaluate(self, global_arrays: list[np.ndarray]) -> tuple[float, int, dict[str, float]]:
        """Held-out loss and WAPE of the global model with this node's own product offsets."""
        from shared.model import evaluate, personalised

        self.model.set_federated_parameters(global_arrays)
        self._save_global(global_arrays)
        scored = personalised(self.model, self.train_data)
        result = evaluate(scored, self.holdout)
        return float(result["loss"]), len(self.holdout), {"wape": float(result["wape"])}

    # -- storage ---------------------------------------------------------------------------

    def _release_path(self, release_id: str) -> Path:
        digest = hashlib.sha256(release_id.encode("utf-8")).hexdigest()[:32]
        return self._updates / f"{digest}.npz"

    def _keep(self, release_id: str, released: Released) -> None:
        self._updates.mkdir(parents=True, exist_ok=True)
        path = self._release_path(release_id)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            *released.arrays,
            weight=np.array(released.weight),
            metrics=np.array(json.dumps(released.metrics)),
        )
        tmp.replace(path)

    def _cached(self, release_id: str) -> Released | None:
        path = self._release_path(release_id)
        if not path.exists():
            return None
        with np.load(path) as stored:
            arrays = [stored[f"arr_{i}"] for i in range(len(stored.files) - 2)]
            return Released(
                arrays=arrays,
                weight=int(stored["weight"]),
                metrics=json.loads(str(stored["metrics"])),
            )

    def _load_local_state(self) -> None:
        path = self.node_dir / "model" / "local.npz"
        if path.exists():
            with np.load(path) as stored:
                if tuple(stored["product_ids"].tolist()) == self.model.product_ids:
                    self.model.set_local_parameters([stored["offsets"]])

    def _save_local_state(self) -> None:
        path = self.node_dir / "model" / "local.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            product_ids=np.array(self.model.product_ids),
            offsets=self.model.local_parameters()[0],
        )

    def _save_global(self, arrays: list[np.ndarray]) -> None:
        path = self.node_dir / "model" / "global.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, *arrays)


class RefusedRound(Exception):
    """The node will not release an update for this round; the message says why."""
