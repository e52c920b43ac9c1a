"""The demand model: log demand per product-day with an explicit, sign-constrained elasticity.

Pricing reads the per-category elasticity directly, so it is a named parameter, forced negative
(``-softplus``) so that no amount of noise or bad data can make demand rise with price. Every
parameter is a table of which each example reads exactly one row (``parameter_rows``), so
DP-SGD gets exact per-example gradients from the gathered rows alone. Product offsets
personalise the model to one shop and never leave it; everything else is federated and
exchanged as an ordered list of numpy arrays (Flower's wire format).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.model.features import CALENDAR_FEATURES
from shared.taxonomy import load_taxonomy

# softplus(x) = 1 at x = log(e - 1): every category starts at elasticity -1.
_INITIAL_RAW_ELASTICITY = math.log(math.e - 1.0)

# The federated state, in the fixed order every node and the coordinator use.
FEDERATED_PARAMETERS: tuple[str, ...] = (
    "category_intercept.weight",
    "elasticity_raw.weight",
    "promo_lift.weight",
    "competitor.weight",
    "category_calendar.weight",
    "calendar.weight",
)
LOCAL_PARAMETERS: tuple[str, ...] = ("product_offset.weight",)


class DemandModel(nn.Module):
    """log E[quantity] = offset[p] + intercept[c] + elasticity[c]*log(price/ref) + ...

    ``node`` and ``product_ids`` say whose products the local offsets belong to; trainers
    check them so one shop's model is never fitted on another shop's rows.
    """

    def __init__(
        self,
        product_ids: tuple[str, ...],
        *,
        node: str,
        categories: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        self.node = node
        self.product_ids = tuple(product_ids)
        self.categories = tuple(categories or load_taxonomy().codes)
        n_cat = len(self.categories)
        self.product_offset = nn.Embedding(max(len(self.product_ids), 1), 1)
        self.category_intercept = nn.Embedding(n_cat, 1)
        self.elasticity_raw = nn.Embedding(n_cat, 1)
        self.promo_lift = nn.Embedding(n_cat, 1)  # log multiplier at full promotion
        self.competitor = nn.Embedding(n_cat, 2)  # cross-price coefficient, presence shift
        self.category_calendar = nn.Embedding(n_cat, CALENDAR_FEATURES)
        self.calendar = nn.Linear(CALENDAR_FEATURES, 1, bias=False)  # shared calendar body
        with torch.no_grad():
            for module in (
                self.product_offset,
                self.category_intercept,
                self.promo_lift,
                self.competitor,
                self.category_calendar,
                self.calendar,
            ):
                module.weight.zero_()
            self.elasticity_raw.weight.fill_(_INITIAL_RAW_ELASTICITY)

    def forward(
        self,
        product: torch.Tensor,
        category: torch.Tensor,
        drivers: torch.Tensor,
        calendar: torch.Tensor,
    ) -> torch.Tensor:
        """Log mean demand per example (the Poisson log-rate)."""
        weights = dict(self.named_parameters())
        rows = {
            name: weights[name][index]
            for name, index in self.parameter_rows(product, category).items()
        }
        return self.log_mean_from_rows(rows, drivers, calendar)

    def parameter_rows(
        self, product: torch.Tensor, category: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """For every parameter, the one row each example reads (a parameter's first dimension).

        Each example touches exactly one row of each parameter, so its gradient with respect to
        that parameter is non-zero in that row only: DP-SGD gets exact per-example gradients
        from the gradients of the gathered rows (see ``train_private``).
        """
        shared = torch.zeros_like(category)  # the calendar body has a single row
        return {
            "product_offset.weight": product,
            "category_intercept.weight": category,
            "elasticity_raw.weight": category,
            "promo_lift.weight": category,
            "competitor.weight": category,
            "category_calendar.weight": category,
            "calendar.weight": shared,
        }

    @staticmethod
    def log_mean_from_rows(
        rows: dict[str, torch.Tensor], drivers: torch.Tensor, calendar: torch.Tensor
    ) -> torch.Tensor:
        """The model's formula given each example's parameter rows (``forward`` uses it too)."""
        elasticity = -F.softplus(rows["elasticity_raw.weight"]).squeeze(-1)
        competitor = rows["competitor.weight"]
        return (
            rows["product_offset.weight"].squeeze(-1)
            + rows["category_intercept.weight"].squeeze(-1)
            + elasticity * drivers[:, 0]
            + rows["promo_lift.weight"].squeeze(-1) * drivers[:, 1]
            + competitor[:, 0] * drivers[:, 2]
            + competitor[:, 1] * drivers[:, 3]
            + ((rows["category_calendar.weight"] + rows["calendar.weight"]) * calendar).sum(-1)
        )

    def elasticity_tensor(self) -> torch.Tensor:
        """All categories' elasticities (negative by construction), differentiable."""
        return -F.softplus(self.elasticity_raw.weight.squeeze(-1))

    def elasticities(self) -> dict[str, float]:
        """Own-price elasticity per taxonomy code."""
        values = self.elasticity_tensor().detach().tolist()
        return dict(zip(self.categories, values, strict=True))

    def federated_parameters(self) -> list[np.ndarray]:
        """Everything shared across nodes, in FEDERATED_PARAMETERS order; never product offsets."""
        return _export(self, FEDERATED_PARAMETERS)

    def set_federated_parameters(self, arrays: list[np.ndarray]) -> None:
        """Load an aggregate received from the coordinator; local offsets are untouched."""
        _import(self, FEDERATED_PARAMETERS, arrays)

    def local_parameters(self) -> list[np.ndarray]:
        """The per-product offsets that personalise the model; they stay on this machine."""
        return _export(self, LOCAL_PARAMETERS)

    def set_local_parameters(self, arrays: list[np.ndarray]) -> None:
        _import(self, LOCAL_PARAMETERS, arrays)


def _export(model: nn.Module, names: tuple[str, ...]) -> list[np.ndarray]:
    state = model.state_dict()
    return [state[name].detach().cpu().numpy().copy() for name in names]


def _import(model: nn.Module, names: tuple[str, ...], arrays: list[np.ndarray]) -> None:
    if len(arrays) != len(names):
        raise ValueError(f"expected {len(names)} arrays, got {len(arrays)}")
    state = model.state_dict()
    with torch.no_grad():
        for name, array in zip(names, arrays, strict=True):
            target = state[name]
            if tuple(array.shape) != tuple(target.shape):
                raise ValueError(
                    f"{name}: expected shape {tuple(target.shape)}, got {tuple(array.shape)}"
                )
            target.copy_(torch.as_tensor(array, dtype=target.dtype))
