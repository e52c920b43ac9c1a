"""Value of collaboration: how much better the federated model forecasts this shop's own sales.

Both models are scored on the shop's own most recent 20% of history, which neither was fitted
on: the federated model (global parameters, this shop's offsets fitted on the earlier part) and
a model trained on the shop's data alone. The figure is said in the shop owner's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.insights.context import InsightContext, InsightInputError
from shared.model import evaluate
from shared.model.baselines import train_local_only

LOCAL_NEWTON_STEPS = 30


@dataclass(frozen=True)
class CollaborationValue:
    node: str
    federated_wape: float
    local_wape: float
    improvement_pct: float  # > 0: the federated model's errors are that much smaller
    message: str
    holdout_days: int
    examples: int

    def to_row(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "federated_wape": self.federated_wape,
            "local_wape": self.local_wape,
            "improvement_pct": self.improvement_pct,
            "message": self.message,
            "holdout_days": self.holdout_days,
            "examples": self.examples,
        }


def explain(improvement_pct: float) -> str:
    """The comparison in plain words (WAPE: the share of units the forecast gets wrong)."""
    if abs(improvement_pct) < 1.0:
        return "Forecasts are about as close with the federation as with your data alone"
    if improvement_pct > 0:
        return (
            f"Forecasts are {improvement_pct:.0f}% closer with the federation than with your "
            "data alone"
        )
    return (
        f"Forecasts are {-improvement_pct:.0f}% further off with the federation than with your "
        "data alone; your own model is the better guide for now"
    )


def collaboration_value(ctx: InsightContext) -> CollaborationValue:
    if len(ctx.holdout) == 0 or len(ctx.train) == 0:
        raise InsightInputError(
            f"{ctx.node}: too little history to hold out recent days for scoring"
        )
    federated = evaluate(ctx.personalised_on(ctx.train), ctx.holdout)["wape"]
    local = evaluate(train_local_only(ctx.train, epochs=LOCAL_NEWTON_STEPS), ctx.holdout)["wape"]
    improvement = 100.0 * (local - federated) / local if local > 0 else 0.0
    days = int((ctx.holdout.dates.max() - ctx.holdout.dates.min()).astype(int)) + 1
    return CollaborationValue(
        node=ctx.node,
        federated_wape=round(float(federated), 4),
        local_wape=round(float(local), 4),
        improvement_pct=round(float(improvement), 1),
        message=explain(improvement),
        holdout_days=days,
        examples=len(ctx.holdout),
    )
