"""What a demo generation produced, for callers that do not want to parse ground_truth.json."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class RetailerEntry:
    """One generated retailer: where its export is, in which dialect, and its exact totals."""

    retailer_id: str
    dialect: str
    path: Path
    relative_path: str
    rows: int
    products: int
    baskets: int
    total_quantity: int
    total_revenue: float
    categories: tuple[str, ...]
    category_labels: Mapping[str, str]  # the retailer's label -> taxonomy code
    exported_columns: tuple[str, ...]  # canonical names present in the file
    stockout_days: int
    size: float


@dataclass(frozen=True)
class DemoManifest:
    """The whole demo: shared settings, the ground-truth file and every retailer."""

    out_dir: Path
    seed: int
    scale: float
    generator_version: str
    taxonomy_version: str
    start_date: date
    end_date: date
    ground_truth_path: Path
    retailers: tuple[RetailerEntry, ...]

    @property
    def total_rows(self) -> int:
        return sum(entry.rows for entry in self.retailers)

    def retailer(self, retailer_id: str) -> RetailerEntry:
        for entry in self.retailers:
            if entry.retailer_id == retailer_id:
                return entry
        raise KeyError(retailer_id)
