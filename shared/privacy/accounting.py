"""Thin wrappers on Opacus's accountants: compose a retailer's releases and calibrate noise.

Every release a node makes (one DP-SGD round, one DP count release) is a Poisson-subsampled
Gaussian mechanism, so a retailer's whole privacy history is a list of (noise multiplier, sample
rate, steps). Composing it in one accountant is what makes the lifetime cap meaningful. The numbers
here are exactly what Opacus's `RDPAccountant` reports for the same history (so the ledger and the
training code never disagree); the per-mechanism RDP curve is cached because the ledger recomposes
its full history on every question.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # Opacus imports torch: loaded on first use, so reading a ledger stays quick
    from types import ModuleType

    from opacus.accountants import PRVAccountant, RDPAccountant

LIFETIME_EPSILON_CAP = 10.0
"""The design's lifetime budget per retailer; a retailer may choose less, never silently more."""

DEFAULT_DELTA = 1e-5
"""The design's δ for every record-level guarantee."""

ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + [*map(float, range(12, 64))]
)
"""RDP orders searched by the RDP->(ε, δ) conversion: Opacus's ``RDPAccountant.DEFAULT_ALPHAS``
(a test checks they are equal), so our ε is Opacus's ε."""


def _opacus_rdp() -> ModuleType:
    from opacus.accountants.analysis import rdp

    return rdp


MAX_NOISE_MULTIPLIER = 1e6


class AccountantKind(StrEnum):
    """Which Opacus accountant turns a history into ε."""

    RDP = "rdp"
    PRV = "prv"


@dataclass(frozen=True)
class Mechanism:
    """One release: `steps` compositions of a Gaussian with Poisson sampling at `sample_rate`.

    A plain Gaussian release (a DP count) is `Mechanism.gaussian(sigma)`: every record is in the
    query (sample_rate 1) and it happens once.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        problem = mechanism_problem(self.noise_multiplier, self.sample_rate, self.steps)
        if problem:
            raise ValueError(problem)

    @classmethod
    def gaussian(cls, noise_multiplier: float) -> Mechanism:
        """A single full-batch Gaussian release, as used for DP counts."""
        return cls(noise_multiplier=noise_multiplier, sample_rate=1.0, steps=1)

    def as_opacus(self) -> tuple[float, float, int]:
        """The (noise_multiplier, sample_rate, steps) triple Opacus accountants keep as history."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


def mechanism_problem(noise_multiplier: float, sample_rate: float, steps: int) -> str | None:
    """Why these parameters are not a valid release, in words; None when they are."""
    if not math.isfinite(noise_multiplier) or noise_multiplier <= 0:
        return f"noise multiplier must be a positive number, got {noise_multiplier!r}"
    if not math.isfinite(sample_rate) or not 0 < sample_rate <= 1:
        return f"sample rate must be in (0, 1], got {sample_rate!r}"
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        return f"steps must be a whole number >= 1, got {steps!r}"
    return None


History = Sequence[Mechanism]


@lru_cache(maxsize=4096)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> NDArray[np.float64]:
    """Opacus's RDP curve of one step over ORDERS (cached: the slow part, independent of steps)."""
    curve = _opacus_rdp().compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(ORDERS)
    )
    array = np.asarray(curve, dtype=np.float64)
    array.setflags(write=False)
    return array


def rdp_curve(history: History) -> NDArray[np.float64]:
    """Composed RDP of the history at every order in ORDERS (RDP adds under composition)."""
    total = np.zeros(len(ORDERS), dtype=np.float64)
    for release in history:
        total = total + _rdp_per_step(release.noise_multiplier, release.sample_rate) * release.steps
    return total


def epsilon_from_rdp(curve: NDArray[np.float64], delta: float) -> float:
    """Opacus's RDP->(ε, δ) conversion (Balle et al. 2020, Thm 21), minimised over ORDERS."""
    if not np.any(curve):
        return 0.0
    with warnings.catch_warnings():
        # Opacus warns when the best order is at the edge of ORDERS; the bound is still valid.
        warnings.simplefilter("ignore")
        eps, _ = _opacus_rdp().get_privacy_spent(orders=list(ORDERS), rdp=curve, delta=delta)
    value = float(eps)
    return value if math.isfinite(value) else math.inf


def make_accountant(
    history: History, kind: AccountantKind = AccountantKind.RDP
) -> RDPAccountant | PRVAccountant:
    """An Opacus accountant whose history is this one, e.g. to hand to a PrivacyEngine."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    accountant = PRVAccountant() if kind is AccountantKind.PRV else RDPAccountant()
    accountant.history = [release.as_opacus() for release in history]
    return accountant


def epsilon(
    history: History,
    delta: float = DEFAULT_DELTA,
    kind: AccountantKind = AccountantKind.RDP,
) -> float:
    """ε spent by the whole history at δ. RDP (default) equals `RDPAccountant.get_epsilon`.

    PRV is tighter but slower and numerically fussier; the ledger uses RDP so that its figures are
    reproducible and cheap to recompose from the release rows.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not history:
        return 0.0
    if kind is AccountantKind.PRV:
        from opacus.accountants import PRVAccountant

        prv = PRVAccountant()
        prv.history = [release.as_opacus() for release in history]
        return float(prv.get_epsilon(delta=delta))
    return epsilon_from_rdp(rdp_curve(history), delta)


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    already_spent_history: History = (),
    *,
    cap_epsilon: float | None = LIFETIME_EPSILON_CAP,
    rel_tol: float = 1e-3,
) -> float:
    """Smallest noise multiplier whose round keeps the composed total within spent + target.

    Opacus's `get_noise_multiplier` only calibrates a single mechanism from zero, so this bisects
    (in log sigma) on the *composed* RDP of `already_spent_history` plus the new round, which is
    what the ledger will charge. The result satisfies ε(history + round) <= ε(history) + target,
    while result * (1 - rel_tol) does not. `cap_epsilon` refuses targets beyond the lifetime cap.
    """
    if not math.isfinite(target_epsilon) or target_epsilon <= 0:
        raise ValueError(f"target epsilon must be a positive number, got {target_epsilon!r}")
    if not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must be in (0, 1), got {rel_tol!r}")
    problem = mechanism_problem(1.0, sample_rate, steps)
    if problem:
        raise ValueError(problem)
    base = rdp_curve(already_spent_history)
    spent = epsilon_from_rdp(base, delta)
    bound = spent + target_epsilon
    if cap_epsilon is not None and bound > cap_epsilon:
        raise ValueError(
            f"a round of ε {target_epsilon:g} on top of {spent:.3g} already spent would exceed "
            f"the cap of {cap_epsilon:g}"
        )
    floor = epsilon_from_rdp(base + np.finfo(np.float64).tiny, delta)
    if bound <= floor:
        raise ValueError(
            f"no noise level can keep the total within ε {bound:.3g}: at δ {delta:g} the RDP "
            f"conversion alone costs ε {floor:.3g}"
        )

    def excess(sigma: float) -> float:
        curve = base + _rdp_per_step(sigma, sample_rate) * steps
        return epsilon_from_rdp(curve, delta) - bound

    high = 1.0
    high_excess = excess(high)
    while high_excess > 0:
        high *= 2.0
        if high > MAX_NOISE_MULTIPLIER:
            raise ValueError("the target epsilon is too small to reach with any usable noise")
        high_excess = excess(high)
    low = high / 2.0
    low_excess = excess(low)
    while low_excess <= 0:
        high, high_excess = low, low_excess
        low /= 2.0
        if low < 1e-6:
            return high
        low_excess = excess(low)
    return _refine(excess, low, low_excess, high, high_excess, rel_tol)


def _refine(
    excess: Callable[[float], float],
    low: float,
    low_excess: float,
    high: float,
    high_excess: float,
    rel_tol: float,
) -> float:
    """Shrink a bracket (excess(low) > 0 >= excess(high)) by Illinois false position in log sigma.

    Each evaluation costs an RDP curve, so a superlinear method matters; bisection is the fallback
    whenever ε is infinite at an end. The bracket invariant is kept, so the answer always fits.
    """
    keep = 0
    while high - low > rel_tol * high:
        log_low, log_high = math.log(low), math.log(high)
        if math.isfinite(low_excess) and low_excess != high_excess:
            guess = log_high - high_excess * (log_high - log_low) / (high_excess - low_excess)
            margin = 0.25 * rel_tol * (log_high - log_low)
            guess = min(max(guess, log_low + margin), log_high - margin)
        else:
            guess = 0.5 * (log_low + log_high)
        middle = math.exp(guess)
        middle_excess = excess(middle)
        if middle_excess <= 0:
            high, high_excess = middle, middle_excess
            low_excess = low_excess / 2 if keep == -1 else low_excess
            keep = -1
        else:
            low, low_excess = middle, middle_excess
            high_excess = high_excess / 2 if keep == 1 else high_excess
            keep = 1
    return high
