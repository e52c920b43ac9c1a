"""The canonical retail schema every retailer's export is mapped onto.

Horizontal federated learning only works when every node means the same thing by each column, so
this module is the single statement of names, types, units, allowed ranges and which task needs
which column. Importers, validators and models read it; nothing else redefines it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class Task(StrEnum):
    """The learning tasks a retailer can consent to and that validation checks readiness for."""

    DEMAND_PRICING = "demand_pricing"
    FORECASTING = "forecasting"
    BUNDLES = "bundles"

    @property
    def label(self) -> str:
        return {
            Task.DEMAND_PRICING: "demand and pricing",
            Task.FORECASTING: "demand forecasting",
            Task.BUNDLES: "bundle suggestions",
        }[self]


class Kind(StrEnum):
    """Value kinds the importer knows how to parse."""

    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class FieldSpec:
    """One canonical column: what it holds, its unit, its range and who needs it."""

    name: str
    kind: Kind
    description: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    min_inclusive: bool = True
    core: bool = False
    tasks: frozenset[Task] = frozenset()
    local_only: bool = False

    def in_range_text(self) -> str:
        low = (
            ""
            if self.minimum is None
            else f"{'>=' if self.min_inclusive else '>'} {self.minimum:g}"
        )
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        return " and ".join(part for part in (low, high) if part)


ALL_TASKS = frozenset(Task)

# Upper bounds keep exact integer revenue (price in micro-units x quantity) inside int64.
MAX_PRICE = 1_000_000.0
MAX_QUANTITY = 100_000

FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "product_id",
        Kind.TEXT,
        "The retailer's own product code (SKU, article number, barcode).",
        core=True,
        tasks=ALL_TASKS,
    ),
    FieldSpec(
        "category",
        Kind.TEXT,
        "Product category, mapped onto the shared taxonomy.",
        tasks=ALL_TASKS,
    ),
    FieldSpec(
        "price",
        Kind.DECIMAL,
        "Unit selling price actually charged.",
        unit="currency per unit",
        minimum=0.0,
        min_inclusive=False,
        maximum=MAX_PRICE,
        core=True,
        tasks=frozenset({Task.DEMAND_PRICING, Task.FORECASTING}),
    ),
    FieldSpec(
        "quantity_sold",
        Kind.INTEGER,
        "Units sold on the line; negative numbers are returns.",
        unit="units",
        minimum=-MAX_QUANTITY,
        maximum=MAX_QUANTITY,
        core=True,
        tasks=ALL_TASKS,
    ),
    FieldSpec(
        "timestamp",
        Kind.TIMESTAMP,
        "When the sale happened (date, optionally with time; local shop time).",
        core=True,
        tasks=ALL_TASKS,
    ),
    FieldSpec(
        "customer_segment",
        Kind.TEXT,
        "Customer group (e.g. loyalty, walk-in, business).",
    ),
    FieldSpec(
        "promotion_active",
        Kind.BOOLEAN,
        "Whether the product was on promotion at the time of sale.",
        tasks=frozenset({Task.DEMAND_PRICING}),
    ),
    FieldSpec(
        "seasonal_factor",
        Kind.DECIMAL,
        "The retailer's own seasonal index for the period (1.0 = normal).",
        minimum=0.0,
        maximum=100.0,
    ),
    FieldSpec(
        "competitor_price",
        Kind.DECIMAL,
        "A competitor's price for the same product, when the retailer tracks one.",
        unit="currency per unit",
        minimum=0.0,
        min_inclusive=False,
        maximum=MAX_PRICE,
    ),
    FieldSpec(
        "inventory_level",
        Kind.INTEGER,
        "Units in stock at the time of sale (0 = stock-out).",
        unit="units",
        minimum=0,
        maximum=100_000_000,
    ),
    FieldSpec(
        "retailer_id",
        Kind.TEXT,
        "Store or branch identifier. Kept on this machine.",
        local_only=True,
    ),
    FieldSpec(
        "customer_id",
        Kind.TEXT,
        "Customer or loyalty-card number. Hashed on import and kept on this machine.",
        local_only=True,
    ),
    FieldSpec(
        "transaction_id",
        Kind.TEXT,
        "Receipt or basket number, used to find products bought together.",
        local_only=True,
    ),
    FieldSpec(
        "unit_cost",
        Kind.DECIMAL,
        "What one unit cost the retailer; lets pricing reason about margin.",
        unit="currency per unit",
        minimum=0.0,
        maximum=MAX_PRICE,
        local_only=True,
    ),
)

FIELDS_BY_NAME: dict[str, FieldSpec] = {spec.name: spec for spec in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(spec.name for spec in FIELDS)
CORE_FIELDS: tuple[str, ...] = tuple(spec.name for spec in FIELDS if spec.core)

# Bundles need baskets: either a receipt number or a customer plus time.
BASKET_FIELDS: tuple[str, ...] = ("transaction_id", "customer_id")


def fields_required_for(task: Task) -> tuple[str, ...]:
    """Canonical columns a task cannot run without (besides a basket column for bundles)."""
    return tuple(spec.name for spec in FIELDS if task in spec.tasks)


@dataclass(frozen=True)
class MinimumDataset:
    """The least data a task can learn anything useful from on one retailer's machine."""

    rows: int
    days_of_history: int
    products: int
    baskets: int = 0


DEFAULT_MINIMUMS: dict[Task, MinimumDataset] = {
    Task.DEMAND_PRICING: MinimumDataset(rows=500, days_of_history=56, products=5),
    Task.FORECASTING: MinimumDataset(rows=500, days_of_history=90, products=1),
    Task.BUNDLES: MinimumDataset(rows=500, days_of_history=28, products=10, baskets=200),
}


@dataclass(frozen=True)
class ValidationSettings:
    """Knobs a retailer or operator may change; defaults follow the design."""

    tasks: frozenset[Task] = ALL_TASKS
    minimums: dict[Task, MinimumDataset] = field(default_factory=lambda: dict(DEFAULT_MINIMUMS))
    max_detailed_issues: int = 1000
    future_tolerance_days: int = 1
    gap_warning_days: int = 7
    outlier_mad_threshold: float = 8.0

    def with_minimum(self, task: Task, **changes: int) -> ValidationSettings:
        minimums = dict(self.minimums)
        minimums[task] = replace(minimums[task], **changes)
        return replace(self, minimums=minimums)
