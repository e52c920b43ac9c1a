"""Everything one node's insight engines read, loaded once: its rows, its features, its model.

Insights are computed on the retailer's machine from the global (federated) model plus the
retailer's own data. The context holds exactly that and nothing from other retailers: the
federated parameters, product offsets refitted on this shop's rows, and per-product facts
(current price, unit cost, competitor price) taken from this shop's own history.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.ingest.aggregates import product_day
from shared.model import DemandData, DemandModel, build_examples, chronological_split
from shared.model.training import personalised, train_local

CANONICAL_FILE = "canonical.parquet"
NODE_FILE = "node.json"
GLOBAL_MODEL_FILE = Path("model") / "global.npz"
# Current price: the median selling price over the product's last this-many days with sales.
CURRENT_PRICE_DAYS = 28
LOCAL_MODEL_VERSION = "local-only"


class InsightInputError(ValueError):
    """The node has no data or no model to compute insights from; the message says what to do."""


@dataclass
class InsightContext:
    """One node's inputs to every insight engine.

    ``model`` carries the federated parameters with product offsets refitted on all of this
    node's product-days; ``train``/``holdout`` are the chronological split used to calibrate
    intervals and to score the model against a local-only one.
    """

    node: str
    frame: pd.DataFrame
    data: DemandData
    train: DemandData
    holdout: DemandData
    global_model: DemandModel
    model: DemandModel
    products: pd.DataFrame  # indexed by product_id, see ``product_facts``
    model_version: str
    data_fingerprint: str
    epsilon_spent: float = 0.0
    _fitted: dict[str, DemandModel] = field(default_factory=dict, repr=False)

    @property
    def last_date(self) -> np.datetime64:
        """The last day of this node's history; forecasts start the day after."""
        return np.datetime64(self.data.dates.max(), "D")

    def personalised_on(self, data: DemandData) -> DemandModel:
        """The global model with offsets refitted on ``data`` (e.g. the training part only)."""
        span = (data.dates.min(), data.dates.max()) if len(data) else ("", "")
        key = f"{len(data)}:{span[0]}:{span[1]}"
        if key not in self._fitted:
            self._fitted[key] = personalised(self.global_model, data)
        return self._fitted[key]

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        node: str,
        *,
        global_arrays: list[np.ndarray] | None = None,
        model_version: str | None = None,
        epsilon_spent: float = 0.0,
        data_fingerprint: str | None = None,
    ) -> InsightContext:
        """Build from a canonical frame; without global arrays a local-only model is fitted."""
        if frame.empty:
            raise InsightInputError(f"{node}: no sales rows; import a sales file first")
        data = build_examples(frame, node)
        if len(data) == 0:
            raise InsightInputError(f"{node}: no product-days with a price; check the import")
        train, holdout = chronological_split(data)
        global_model = DemandModel(data.product_ids, node=node, categories=data.categories)
        if global_arrays is None:
            train_local(global_model, train, epochs=30)
            version = model_version or LOCAL_MODEL_VERSION
        else:
            global_model.set_federated_parameters(global_arrays)
            version = model_version or model_version_of(global_arrays)
        return cls(
            node=node,
            frame=frame,
            data=data,
            train=train,
            holdout=holdout,
            global_model=global_model,
            model=personalised(global_model, data),
            products=product_facts(frame, data),
            model_version=version,
            data_fingerprint=data_fingerprint or frame_fingerprint(frame),
            epsilon_spent=epsilon_spent,
        )

    @classmethod
    def from_node_dir(cls, node_dir: Path) -> InsightContext:
        """A prepared node directory (canonical frame, node.json, last global model, ledger)."""
        from shared.privacy import PrivacyLedger

        canonical = node_dir / CANONICAL_FILE
        if not canonical.exists():
            raise InsightInputError(
                f"{node_dir}: no imported sales data ({CANONICAL_FILE}); import a file first"
            )
        model_path = node_dir / GLOBAL_MODEL_FILE
        if not model_path.exists():
            raise InsightInputError(
                f"{node_dir}: no global model yet; join a training campaign first"
            )
        name = str(json.loads((node_dir / NODE_FILE).read_text("utf-8"))["name"])
        with np.load(model_path) as stored:
            arrays = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        with PrivacyLedger.in_data_dir(node_dir) as ledger:
            spent = ledger.status().spent_epsilon
        return cls.from_frame(
            pd.read_parquet(canonical),
            name,
            global_arrays=arrays,
            epsilon_spent=spent,
            data_fingerprint=file_fingerprint(canonical),
        )


def model_version_of(arrays: list[np.ndarray]) -> str:
    """A short content hash of the federated parameters: the same model, the same version."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return "g-" + digest.hexdigest()[:12]


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of a canonical frame, so an insight names exactly the data it came from."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return "d-" + hashlib.sha256(hashed.tobytes()).hexdigest()[:12]


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "d-" + digest.hexdigest()[:12]


def product_facts(frame: pd.DataFrame, data: DemandData) -> pd.DataFrame:
    """Per product the shop's own facts: category, current and reference price, unit cost,
    last competitor price, last sale date and units sold. Index: product_id (as in ``data``)."""
    days = product_day(frame)
    days["product_id"] = days["product_id"].astype(str)
    days = days.loc[days["quantity_sold"] > 0]
    days = days.loc[days["product_id"].isin(set(data.product_ids))].sort_values("date")
    groups = days.groupby("product_id", observed=True)
    last_sale = groups["date"].max()
    recent = days.loc[
        days["date"] > days["product_id"].map(last_sale) - pd.Timedelta(days=CURRENT_PRICE_DAYS)
    ]
    if "promotion_share" in recent.columns:
        regular = recent.loc[recent["promotion_share"].fillna(0.0) < 0.5]
        current = regular.groupby("product_id")["average_price"].median()
        current = current.combine_first(recent.groupby("product_id")["average_price"].median())
    else:
        current = recent.groupby("product_id")["average_price"].median()
    out = pd.DataFrame(index=pd.Index(list(data.product_ids), name="product_id"))
    category_index = data.category.numpy()
    product_index = data.product.numpy()
    first_row = np.full(data.n_products, -1)
    first_row[product_index[::-1]] = np.arange(len(product_index))[::-1]
    out["category"] = [
        data.categories[category_index[row]] if row >= 0 else "other" for row in first_row
    ]
    out["reference_price"] = data.reference_price
    out["current_price"] = current.reindex(out.index).fillna(out["reference_price"])
    for column in ("unit_cost", "competitor_price"):
        if column in days.columns:
            known = days.dropna(subset=[column])
            out[column] = known.groupby("product_id")[column].last().reindex(out.index)
        else:
            out[column] = np.nan
    out["last_sale"] = last_sale.reindex(out.index)
    out["units_sold"] = groups["quantity_sold"].sum().reindex(out.index).fillna(0).astype(int)
    return out
