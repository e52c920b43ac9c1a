"""95% intervals for the per-category elasticities, for pricing's confidence statements.

Choice: a cluster-robust sandwich (Huber-White) around the fitted Poisson model, clustered by
product. The Poisson model is right about the mean but not the variance (sales are
overdispersed and a product's days are correlated through stock and price episodes), so the
inverse Fisher alone would be too narrow; the sandwich corrects both from the data, and costs
one pass instead of the dozens of refits a bootstrap over products would need. The interval is
built on the unconstrained parameter and mapped through -softplus, so it is always negative.
With very few products in a category the clustered estimate is itself noisy.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import torch
import torch.nn.functional as F

from shared.model.demand import DemandModel
from shared.model.design import cluster_scores, jacobian, parameter_offsets, weighted_gram
from shared.model.features import DemandData


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    standard_error: float  # of the elasticity itself (delta method)
    examples: int


@torch.no_grad()
def elasticity_intervals(
    model: DemandModel, data: DemandData, level: float = 0.95
) -> dict[str, Interval]:
    """Interval per category that has examples with price variation in ``data``."""
    log_mean = model(data.product, data.category, data.drivers, data.calendar).double()
    mean = torch.exp(log_mean)
    jac = jacobian(model, data)
    bread = torch.linalg.pinv(weighted_gram(jac, mean), hermitian=True)
    scores = cluster_scores(jac, mean - data.quantity.double(), data.product)
    covariance = bread @ (scores.T @ scores) @ bread

    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    raw = model.elasticity_raw.weight.squeeze(-1).double()
    base = parameter_offsets(model)["elasticity_raw.weight"]
    counts = torch.bincount(data.category, minlength=len(model.categories))
    moving = torch.zeros(len(model.categories), dtype=torch.float64).index_add_(
        0, data.category, data.drivers[:, 0].double() ** 2
    )
    out: dict[str, Interval] = {}
    for index, code in enumerate(model.categories):
        if counts[index] == 0 or moving[index] <= 0:
            continue
        se_raw = float(covariance[base + index, base + index].clamp_min(0.0).sqrt())
        r = raw[index]
        out[code] = Interval(
            estimate=-float(F.softplus(r)),
            low=-float(F.softplus(r + z * se_raw)),
            high=-float(F.softplus(r - z * se_raw)),
            standard_error=float(torch.sigmoid(r)) * se_raw,
            examples=int(counts[index]),
        )
    return out
