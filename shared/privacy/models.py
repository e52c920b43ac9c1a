"""What the privacy ledger answers with: quotes, reservations, declines and the budget status.

Plain frozen dataclasses so the desktop app, the CLI (`--json`) and the ClientApp can show or
serialise them without knowing anything about SQLite or Opacus.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.schema import Task


class ReleaseKind(StrEnum):
    """What left the node: a DP-SGD model update or a DP count release."""

    TRAIN = "train"
    COUNT = "count"


class ReleaseState(StrEnum):
    """Pending is charged (it may have left); committed is final; aborted provably never left."""

    PENDING = "pending"
    COMMITTED = "committed"
    ABORTED = "aborted"


class DeclineCode(StrEnum):
    """Machine-readable reason a reservation was refused; the text is in `Decline.reason`."""

    NO_CONSENT = "no_consent"
    BUDGET = "budget"
    CONFLICT = "conflict"
    INVALID = "invalid"


@dataclass(frozen=True)
class Quote:
    """What a release would cost, asked before training; nothing is written."""

    task: Task
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon_before: float
    epsilon_after: float
    cap_epsilon: float
    delta: float
    has_consent: bool

    @property
    def fits(self) -> bool:
        """Whether the release keeps the composed ε within the cap."""
        return self.epsilon_after <= self.cap_epsilon

    @property
    def remaining_epsilon(self) -> float:
        """Budget left after the release (0 when it would not fit)."""
        return max(0.0, self.cap_epsilon - self.epsilon_after)

    @property
    def epsilon_cost(self) -> float:
        """How much the composed ε would grow (less than the release's own ε: RDP composes)."""
        return self.epsilon_after - self.epsilon_before


@dataclass(frozen=True)
class Reservation:
    """A charged release. `fresh` is False when the release id was already charged before.

    A caller that gets `fresh=False` must not produce a *new* noised output for this id (that
    would be a second release under one charge); re-sending the output it already made is free.
    """

    release_id: str
    task: Task
    kind: ReleaseKind
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon_after: float
    state: ReleaseState
    fresh: bool


@dataclass(frozen=True)
class Decline:
    """A clean refusal: nothing was charged and nothing may leave the node."""

    release_id: str
    code: DeclineCode
    reason: str


@dataclass(frozen=True)
class ReleaseRecord:
    """One row of the release history, for the app's ε-per-round chart and the audit view.

    `epsilon_after` is what the ledger recorded when the release was charged; `cumulative_epsilon`
    is recomposed now over the non-aborted releases up to and including this one (None when the
    release itself was aborted).
    """

    release_id: str
    kind: ReleaseKind
    task: Task
    noise_multiplier: float
    sample_rate: float
    steps: int
    state: ReleaseState
    epsilon_after: float
    cumulative_epsilon: float | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PrivacyBudget:
    """The design's PrivacyBudget; spent counts pending releases too (they may have left)."""

    client_id: str
    total_epsilon: float
    spent_epsilon: float
    remaining_epsilon: float
    delta: float
    last_updated: datetime
    releases: tuple[ReleaseRecord, ...] = ()

    @property
    def pending_release_ids(self) -> tuple[str, ...]:
        """Releases charged but not yet confirmed sent (e.g. left over from a crash)."""
        return tuple(r.release_id for r in self.releases if r.state is ReleaseState.PENDING)
