"""Small demand data with a known elasticity, built directly (no files) for fast model tests."""

from __future__ import annotations

import numpy as np
import torch

from shared.model.features import DemandData, calendar_features
from shared.taxonomy import load_taxonomy


def toy_data(
    seed: int,
    *,
    node: str = "shop",
    products: int = 10,
    days: int = 200,
    elasticity: float = -1.5,
    category: str = "dairy",
    level: float = 3.0,
) -> DemandData:
    """Poisson sales whose log-mean is log(level) + offset_p + elasticity * log relative price."""
    rng = np.random.default_rng(seed)
    codes = load_taxonomy().codes
    dates = np.datetime64("2025-01-01") + np.arange(days)
    product = np.repeat(np.arange(products), days)
    date = np.tile(dates, products)
    log_price = rng.normal(0.0, 0.2, len(product))
    offsets = rng.normal(0.0, 0.5, products)
    mean = level * np.exp(offsets[product] + elasticity * log_price)
    drivers = np.zeros((len(product), 4), dtype=np.float32)
    drivers[:, 0] = log_price
    return DemandData(
        node=node,
        product_ids=tuple(f"{node}-p{i}" for i in range(products)),
        categories=codes,
        product=torch.from_numpy(product),
        category=torch.full((len(product),), codes.index(category), dtype=torch.long),
        drivers=torch.from_numpy(drivers),
        calendar=torch.from_numpy(calendar_features(date)),
        quantity=torch.from_numpy(rng.poisson(mean).astype(np.float32)),
        dates=date,
        reference_price=np.ones(products),
    )
