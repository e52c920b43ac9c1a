"""Run settings shared by the ServerApp and every ClientApp, validated from Flower's run config.

Run-config values are outside the FAB hash (anyone submitting a run can override them), so every
value a node reads is range-checked here rather than trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date
from typing import Any

from shared import __version__
from shared.schema import Task

MIN_PARTICIPANTS = 5  # the design: the coordinator only ever sees sums over >= 5 retailers
MAX_DROPOUT_SHARE = 0.3  # SecAgg+ must still reconstruct with 30% of participants gone
MAX_SECAGG_SHARES = 11  # odd neighbourhood size (Flower builds a ring of +-5) beyond which
# SecAgg+ stops being fully connected


def _is_iso_date_or_empty(value: str) -> bool:
    if value == "":
        return True
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


class SettingsError(ValueError):
    """A run-config value outside what this release accepts."""


@dataclass(frozen=True)
class RunSettings:
    rounds: int = 5
    epsilon_per_round: float = 1.0
    delta: float = 1e-5
    task: str = Task.DEMAND_PRICING.value
    strategy: str = "fedavg"
    proximal_mu: float = 0.0
    min_participants: int = MIN_PARTICIPANTS
    local_epochs: int = 1
    # Tuned on the synthetic federation (tests/benchmarks/quality.py): a norm of 1 clipped
    # almost every example and small batches gave many noisy steps.
    batch_size: int = 1024
    max_grad_norm: float = 5.0
    learning_rate: float = 0.05
    update_clip: float = 4.0  # per-coordinate bound on a released update (SecAgg+ range is 8)
    max_weight: int = 10_000  # examples counted per node at most: no shop dominates the average
    query_timeout: float = 60.0
    secagg_timeout: float = 60.0
    max_retries: int = 1
    # Basket statistics for bundles and trends: ε of the one Gaussian count release per node
    # (0 skips the statistics round) and the last day of the weekly trend window, the same for
    # every node ("" = the day before the campaign started).
    statistics_epsilon: float = 1.0
    trend_end: str = ""
    app_version: str = __version__
    seed: int = 0

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (1 <= self.rounds <= 1000, "rounds must be 1..1000"),
            (0.05 <= self.epsilon_per_round <= 10.0, "epsilon-per-round must be 0.05..10"),
            (0.0 < self.delta <= 1e-4, "delta must be in (0, 1e-4]"),
            (self.task in {t.value for t in Task}, f"unknown task {self.task!r}"),
            (self.strategy in ("fedavg", "fedprox"), "strategy must be fedavg or fedprox"),
            (0.0 <= self.proximal_mu <= 10.0, "proximal-mu must be 0..10"),
            (self.min_participants >= MIN_PARTICIPANTS, "min-participants must be >= 5"),
            (1 <= self.local_epochs <= 50, "local-epochs must be 1..50"),
            (8 <= self.batch_size <= 65_536, "batch-size must be 8..65536"),
            (0.01 <= self.max_grad_norm <= 100.0, "max-grad-norm must be 0.01..100"),
            (0.0 < self.learning_rate <= 1.0, "learning-rate must be in (0, 1]"),
            (0.1 <= self.update_clip <= 8.0, "update-clip must be 0.1..8 (SecAgg+ range)"),
            (1 <= self.max_weight <= 1_000_000, "max-weight must be 1..1000000"),
            (1.0 <= self.query_timeout <= 3600.0, "query-timeout must be 1..3600 s"),
            (1.0 <= self.secagg_timeout <= 3600.0, "secagg-timeout must be 1..3600 s"),
            (0 <= self.max_retries <= 5, "max-retries must be 0..5"),
            (
                self.statistics_epsilon == 0.0 or 0.05 <= self.statistics_epsilon <= 10.0,
                "statistics-epsilon must be 0 (off) or 0.05..10",
            ),
            (_is_iso_date_or_empty(self.trend_end), "trend-end must be an ISO date (YYYY-MM-DD)"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

    @staticmethod
    def secagg_shares(participants: int) -> int:
        """Neighbours each node secret-shares with (itself included): everyone in small rounds,
        else a fixed odd neighbourhood, as SecAgg+ intends. Flower's pure-Python Shamir costs
        grow with the square of the share count: 100 fully connected nodes took 177 s to unmask,
        with 11-node neighbourhoods it takes a few seconds."""
        return participants if participants <= MAX_SECAGG_SHARES else MAX_SECAGG_SHARES

    def reconstruction_threshold(self, participants: int) -> int:
        """Shares needed to unmask, so that 30% of participants (or of a node's neighbourhood,
        rounded up there) may drop out and every secret can still be rebuilt."""
        shares = self.secagg_shares(participants)
        if shares < participants:
            return max(2, shares - math.ceil(MAX_DROPOUT_SHARE * shares))
        return max(2, shares - math.floor(MAX_DROPOUT_SHARE * shares))

    def to_run_config(self) -> dict[str, Any]:
        return {name.replace("_", "-"): value for name, value in asdict(self).items()}

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> RunSettings:
        """Known keys are converted to the field's type; unknown keys are ignored."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            key = spec.name.replace("_", "-")
            if key not in config:
                continue
            kind = type(getattr(cls(), spec.name))
            try:
                values[spec.name] = kind(config[key])
            except (TypeError, ValueError) as exc:
                raise SettingsError(f"{key}: {config[key]!r} is not a {kind.__name__}") from exc
        return cls(**values)
