"""The demand model's Jacobian in closed form, as a sparse matrix, for Newton steps and intervals.

log-mean is linear in every parameter except the raw elasticity (through -softplus), so the
derivative of each example's log-mean has 28 non-zeros. Building it directly is what makes
full-batch Fisher scoring and the sandwich covariance take seconds instead of the minutes that
autograd per-example Jacobians take. Columns follow ``model.named_parameters()`` flattened
row-major, the same layout ``parameter_vector`` uses.
"""

from __future__ import annotations

import torch

from shared.model.demand import DemandModel
from shared.model.features import DemandData


def parameter_offsets(model: DemandModel) -> dict[str, int]:
    """Column where each named parameter starts in the flattened layout."""
    out: dict[str, int] = {}
    position = 0
    for name, parameter in model.named_parameters():
        out[name] = position
        position += parameter.numel()
    return out


def parameter_count(model: DemandModel) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_vector(model: DemandModel) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


@torch.no_grad()
def add_to_parameters(model: DemandModel, step: torch.Tensor) -> None:
    """Add a flattened step (in the layout above) to the model's parameters."""
    position = 0
    for parameter in model.parameters():
        n = parameter.numel()
        parameter.add_(step[position : position + n].view_as(parameter).to(parameter.dtype))
        position += n


@torch.no_grad()
def jacobian(model: DemandModel, data: DemandData) -> torch.Tensor:
    """Sparse (N x parameters) d log-mean / d parameters, float64 COO."""
    base = parameter_offsets(model)
    n = len(data)
    p, c = data.product, data.category
    x = data.drivers.double()
    cal = data.calendar.double()
    k = cal.shape[1]
    slope = -torch.sigmoid(model.elasticity_raw.weight.squeeze(-1).double())[c]
    ones = torch.ones(n, dtype=torch.float64)
    columns = [
        base["product_offset.weight"] + p,
        base["category_intercept.weight"] + c,
        base["elasticity_raw.weight"] + c,
        base["promo_lift.weight"] + c,
        base["competitor.weight"] + 2 * c,
        base["competitor.weight"] + 2 * c + 1,
    ]
    values = [ones, ones, slope * x[:, 0], x[:, 1], x[:, 2], x[:, 3]]
    for j in range(k):
        columns.append(base["category_calendar.weight"] + k * c + j)
        values.append(cal[:, j])
        columns.append(torch.full((n,), base["calendar.weight"] + j, dtype=torch.long))
        values.append(cal[:, j])
    rows = torch.arange(n).repeat(len(columns))
    indices = torch.stack([rows, torch.cat(columns)])
    return torch.sparse_coo_tensor(
        indices, torch.cat(values), (n, parameter_count(model)), check_invariants=False
    ).coalesce()


def weighted_gram(jac: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Dense J^T diag(weight) J."""
    weighted = torch.sparse_coo_tensor(
        jac.indices(), jac.values() * weight[jac.indices()[0]], jac.shape, check_invariants=False
    )
    return torch.sparse.mm(jac.t(), weighted).to_dense()


def cluster_scores(
    jac: torch.Tensor, residual: torch.Tensor, cluster: torch.Tensor
) -> torch.Tensor:
    """Dense (clusters x parameters) sums of per-example scores residual_i * J_i."""
    rows, cols = jac.indices()
    groups = int(cluster.max()) + 1 if len(cluster) else 0
    out = torch.zeros(groups, jac.shape[1], dtype=torch.float64)
    out.index_put_((cluster[rows], cols), jac.values() * residual[rows], accumulate=True)
    return out
