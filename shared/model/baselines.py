"""The two yardsticks for federated training: everyone's rows pooled, and one shop alone.

Both use the same DemandModel and the same non-private trainer, so differences in held-out
error come from the data each sees, not from the model. Pooling is only ever done in studies
on synthetic or consented data; no production path moves rows between nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from shared.model.demand import DemandModel
from shared.model.features import DemandData
from shared.model.training import train_local

POOLED_NODE = "pooled"


def pool(datasets: Sequence[DemandData], node: str = POOLED_NODE) -> DemandData:
    """Concatenate several nodes' examples; product ids are prefixed by their node."""
    if not datasets:
        raise ValueError("nothing to pool")
    categories = datasets[0].categories
    if any(d.categories != categories for d in datasets):
        raise ValueError("datasets use different taxonomy orders")
    shift = np.cumsum([0] + [d.n_products for d in datasets[:-1]])
    return DemandData(
        node=node,
        product_ids=tuple(f"{d.node}/{pid}" for d in datasets for pid in d.product_ids),
        categories=categories,
        product=torch.cat([d.product + int(s) for d, s in zip(datasets, shift, strict=True)]),
        category=torch.cat([d.category for d in datasets]),
        drivers=torch.cat([d.drivers for d in datasets]),
        calendar=torch.cat([d.calendar for d in datasets]),
        quantity=torch.cat([d.quantity for d in datasets]),
        dates=np.concatenate([d.dates for d in datasets]),
        reference_price=np.concatenate([d.reference_price for d in datasets]),
    )


def train_centralised(
    datasets: Sequence[DemandData],
    *,
    epochs: int = 100,
) -> tuple[DemandModel, DemandData]:
    """The pooled, non-private upper bound; returns the model and the pooled data it saw."""
    pooled = pool(datasets)
    model = DemandModel(pooled.product_ids, node=pooled.node, categories=pooled.categories)
    train_local(model, pooled, epochs=epochs)
    return model, pooled


def train_local_only(
    data: DemandData,
    *,
    epochs: int = 100,
) -> DemandModel:
    """One shop on its own data alone: what collaboration has to beat."""
    model = DemandModel(data.product_ids, node=data.node, categories=data.categories)
    train_local(model, data, epochs=epochs)
    return model
