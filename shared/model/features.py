"""Turn one retailer's canonical frame into product-day training examples for the demand model.

Every node must build identical features from its own rows, so the recipe lives here once:
price relative to the product's own median price (the level is absorbed by a local offset),
promotion share, competitor price, calendar terms, and the taxonomy category index in the
taxonomy's fixed order, so category ``k`` means the same category on every node.

Zero-sale days: the demand model is fitted with a Poisson (log-link) likelihood on the raw
quantity, which handles zeros directly, so days with no sales must be present. A product gets a
zero row for every day between its first and last sale on which the shop sold anything at all
(days with no sales in the whole shop are taken as closed). The price on those days is unknown:
it is estimated as the geometric mean of the prices at the sales before and after (see
``_fill_zero_days``); promotion and competitor price are carried forward. This price error still
attenuates elasticities of slow sellers, whose days are mostly zero. Unrecorded stock-outs cannot be
told apart from zero-demand days; they are rare and independent of price, so they lower the
product offset a little but leave elasticities unbiased.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from shared.ingest.aggregates import product_day
from shared.taxonomy import Taxonomy, load_taxonomy

DAYS_PER_YEAR = 365.25
HARMONICS = 2
WEEKDAYS = 7
CALENDAR_FEATURES = WEEKDAYS + 2 * HARMONICS
# Columns of DemandData.drivers, in order.
DRIVERS = ("log_relative_price", "promotion", "log_competitor_ratio", "competitor_present")


@dataclass(frozen=True)
class DemandData:
    """One node's product-day examples as tensors, with the product index kept local.

    ``node`` names whose rows these are; trainers refuse data that is not the model's own.
    """

    node: str
    product_ids: tuple[str, ...]
    categories: tuple[str, ...]
    product: torch.Tensor  # (N,) long, index into product_ids
    category: torch.Tensor  # (N,) long, index into categories (the taxonomy order)
    drivers: torch.Tensor  # (N, 4) float, see DRIVERS
    calendar: torch.Tensor  # (N, CALENDAR_FEATURES) float
    quantity: torch.Tensor  # (N,) float, units sold (returns netted, floored at 0)
    dates: np.ndarray  # (N,) datetime64[D]
    reference_price: np.ndarray  # (P,) median observed price per product

    def __len__(self) -> int:
        return int(self.quantity.shape[0])

    @property
    def n_products(self) -> int:
        return len(self.product_ids)

    def subset(self, mask: np.ndarray) -> DemandData:
        """Rows where ``mask`` holds; product and category indices keep their meaning."""
        index = torch.from_numpy(np.flatnonzero(mask))
        return replace(
            self,
            product=self.product[index],
            category=self.category[index],
            drivers=self.drivers[index],
            calendar=self.calendar[index],
            quantity=self.quantity[index],
            dates=self.dates[mask],
        )

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Model inputs then target, the order TensorDataset and DemandModel.forward expect."""
        return (self.product, self.category, self.drivers, self.calendar, self.quantity)


def calendar_features(dates: np.ndarray) -> np.ndarray:
    """Day-of-week one-hot plus yearly Fourier terms (day of year counted from 0 on 1 January)."""
    days = dates.astype("datetime64[D]")
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    doy = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.float64)
    out = np.zeros((len(days), CALENDAR_FEATURES), dtype=np.float32)
    out[np.arange(len(days)), weekday] = 1.0
    angle = 2.0 * math.pi * doy / DAYS_PER_YEAR
    for k in range(1, HARMONICS + 1):
        out[:, WEEKDAYS + 2 * (k - 1)] = np.sin(k * angle)
        out[:, WEEKDAYS + 2 * (k - 1) + 1] = np.cos(k * angle)
    return out


def _fill_zero_days(days: pd.DataFrame) -> pd.DataFrame:
    """Add zero rows for open days inside each product's selling span, carrying prices forward."""
    open_days = np.sort(days["date"].unique())
    span = days.groupby("product_id", observed=True)["date"].agg(["min", "max"])
    grid = pd.MultiIndex.from_product([span.index, open_days], names=["product_id", "date"])
    full = pd.DataFrame(index=grid).reset_index()
    bounds = span.loc[full["product_id"]]
    inside = (full["date"].to_numpy() >= bounds["min"].to_numpy()) & (
        full["date"].to_numpy() <= bounds["max"].to_numpy()
    )
    full = full.loc[inside].merge(days, on=["product_id", "date"], how="left")
    full["quantity_sold"] = full["quantity_sold"].fillna(0)
    carried = ["price", "promotion_share", "competitor_price"]
    groups = full.groupby("product_id", observed=True)[carried]
    before, after = groups.ffill(), groups.bfill()
    full[carried] = before
    # Geometric mean of the prices at the sales before and after (equal when the price did not
    # change in between). Carrying the last price forward alone attenuated elasticities (a
    # promotion's price was carried into the quiet days after it); the higher of the two
    # inflated them. Measured on generate_demo data, the midpoint recovered them best.
    full["price"] = np.sqrt(before["price"] * after["price"])
    return full


def build_examples(frame: pd.DataFrame, node: str, taxonomy: Taxonomy | None = None) -> DemandData:
    """Product-day examples from one canonical frame (the output of ``import_file``)."""
    taxonomy = taxonomy or load_taxonomy()
    codes = taxonomy.codes
    days = product_day(frame)
    days["product_id"] = days["product_id"].astype(str)
    quantity = days["quantity_sold"].to_numpy(dtype=np.float64)
    # Return-only days carry a refund price, not a selling price.
    days["price"] = np.where(quantity > 0, days["average_price"].to_numpy(np.float64), np.nan)
    if "promotion_share" in days.columns:
        days["promotion_share"] = days["promotion_share"].astype("float64")
    else:
        days["promotion_share"] = 0.0
    if "competitor_price" not in days.columns:
        days["competitor_price"] = np.nan
    category_of = (
        days["category"].astype("string").groupby(days["product_id"]).first()
        if "category" in days.columns
        else pd.Series(dtype="string")
    )
    days = days[["product_id", "date", "quantity_sold", "price", "promotion_share",
                 "competitor_price"]]  # fmt: skip
    full = _fill_zero_days(days)
    full = full.loc[full["price"].notna()].reset_index(drop=True)  # before the first real sale

    reference = days.groupby("product_id")["price"].median().dropna()
    product_ids = tuple(sorted(set(full["product_id"]) & set(reference.index)))
    full = full.loc[full["product_id"].isin(product_ids)].reset_index(drop=True)
    product_index = {pid: i for i, pid in enumerate(product_ids)}
    code_index = {code: i for i, code in enumerate(codes)}
    fallback = code_index[taxonomy.fallback]
    ref = reference.loc[list(product_ids)].to_numpy(np.float64)

    product = full["product_id"].map(product_index).to_numpy(np.int64)
    category_per_product = np.array(
        [code_index.get(str(category_of.get(pid, "")), fallback) for pid in product_ids],
        dtype=np.int64,
    )
    price = full["price"].to_numpy(np.float64)
    competitor = full["competitor_price"].to_numpy(np.float64)
    present = np.isfinite(competitor) & (competitor > 0)
    drivers = np.zeros((len(full), len(DRIVERS)), dtype=np.float32)
    drivers[:, 0] = np.log(price / ref[product])
    drivers[:, 1] = np.clip(full["promotion_share"].fillna(0.0).to_numpy(np.float64), 0.0, 1.0)
    drivers[present, 2] = np.log(competitor[present] / ref[product[present]])
    drivers[:, 3] = present
    dates = full["date"].to_numpy().astype("datetime64[D]")
    return DemandData(
        node=node,
        product_ids=product_ids,
        categories=codes,
        product=torch.from_numpy(product),
        category=torch.from_numpy(category_per_product[product]),
        drivers=torch.from_numpy(drivers),
        calendar=torch.from_numpy(calendar_features(dates)),
        quantity=torch.from_numpy(
            np.clip(full["quantity_sold"].to_numpy(np.float64), 0, None).astype(np.float32)
        ),
        dates=dates,
        reference_price=ref,
    )


def chronological_split(data: DemandData, holdout: float = 0.2) -> tuple[DemandData, DemandData]:
    """Train on the first part of the time span, hold out the last ``holdout`` share of it.

    Splitting by time, not at random, is what a forecast faces: the future is never seen.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError("holdout must be between 0 and 1")
    if len(data) == 0:
        return data, data
    first, last = data.dates.min(), data.dates.max()
    span = (last - first).astype(np.int64)
    cutoff = first + np.timedelta64(math.floor(span * (1.0 - holdout)), "D")
    train = data.dates <= cutoff
    return data.subset(train), data.subset(~train)
