"""Loss and error measures shared by training, baselines and the value-of-collaboration view."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.model.demand import DemandModel
from shared.model.features import DemandData

EVAL_BATCH = 65_536


def poisson_loss(
    log_mean: torch.Tensor, quantity: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Poisson negative log-likelihood (log link, constant term dropped), mean over examples.

    Unlike least squares on log(1 + q), it is unbiased for log-mean parameters such as the
    elasticity even when counts are small or zero, and it stays consistent under overdispersion.
    """
    return F.poisson_nll_loss(log_mean, quantity, log_input=True, full=False, reduction=reduction)


@torch.no_grad()
def predict(model: DemandModel, data: DemandData) -> torch.Tensor:
    """Expected units per example."""
    model.eval()
    parts = []
    for start in range(0, len(data), EVAL_BATCH):
        end = start + EVAL_BATCH
        parts.append(
            model(
                data.product[start:end],
                data.category[start:end],
                data.drivers[start:end],
                data.calendar[start:end],
            )
        )
    log_mean = torch.cat(parts) if parts else torch.zeros(0)
    return torch.exp(log_mean)


def evaluate(model: DemandModel, data: DemandData) -> dict[str, float]:
    """WAPE on quantity (sum |y - y_hat| / sum y) and the mean Poisson loss."""
    mean = predict(model, data)
    y = data.quantity
    total = float(y.sum())
    loss = poisson_loss(torch.log(mean.clamp_min(1e-12)), y) if len(data) else torch.tensor(0.0)
    return {
        "wape": float((y - mean).abs().sum()) / total if total > 0 else float("nan"),
        "loss": float(loss),
        "examples": float(len(data)),
    }
