"""Data-quality findings and task readiness on the canonical frame.

These are the things a careful analyst would look at before trusting a model trained on the
file: returns, duplicates, outliers, future dates, gaps, missing optional values, and whether
each task has the columns and the amount of history it needs.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from shared.ingest.report import Issue, IssueKind, Severity, TaskReadiness, ValidationReport
from shared.schema import (
    BASKET_FIELDS,
    Task,
    ValidationSettings,
    fields_required_for,
)

MAD_SCALE = 1.4826  # makes the median absolute deviation estimate a normal sigma


def _row_issues(
    report: ValidationReport,
    frame: pd.DataFrame,
    mask: np.ndarray,
    kind: IssueKind,
    column: str,
    source: str | None,
    message: str,
) -> None:
    total = int(mask.sum())
    if total == 0:
        return
    picked = frame.loc[mask, ["source_row", column]].head(report.max_detailed)
    issues = [
        Issue(
            Severity.WARNING,
            kind,
            message.format(value=value),
            row=int(row),
            column=source or column,
            value=str(value),
        )
        for row, value in zip(picked["source_row"], picked[column], strict=True)
    ]
    report.add_many(issues, total)


def check_quality(
    frame: pd.DataFrame,
    report: ValidationReport,
    mapping: dict[str, str],
    settings: ValidationSettings,
    now: datetime,
) -> None:
    """Warnings only: the rows stay in the frame, the retailer decides."""
    source = mapping.get
    returns = (frame["quantity_sold"] < 0).to_numpy()
    _row_issues(
        report,
        frame,
        returns,
        IssueKind.RETURN,
        "quantity_sold",
        source("quantity_sold"),
        "Negative quantity {value}: treated as a return.",
    )

    duplicated = duplicate_lines(frame)
    _row_issues(
        report,
        frame,
        duplicated,
        IssueKind.DUPLICATE_ROW,
        "product_id",
        source("product_id"),
        "This line repeats an earlier line exactly (product {value}). It was kept; remove it "
        "if it was entered twice.",
    )

    _outliers(frame, report, "price", source("price"), settings.outlier_mad_threshold, log=True)
    positive = frame[frame["quantity_sold"] > 0]
    _outliers(
        positive, report, "quantity_sold", source("quantity_sold"), settings.outlier_mad_threshold
    )

    limit = pd.Timestamp(now) + pd.Timedelta(days=settings.future_tolerance_days)
    future = (frame["timestamp"] > limit).to_numpy()
    _row_issues(
        report,
        frame,
        future,
        IssueKind.FUTURE_DATE,
        "timestamp",
        source("timestamp"),
        "Date {value} is in the future. Check the date or the file's date format.",
    )
    _time_gaps(frame, report, settings.gap_warning_days, source("timestamp"))


DUPLICATE_KEY = (
    "product_id",
    "timestamp",
    "price",
    "quantity_sold",
    "transaction_id",
    "customer_id",
    "retailer_id",
)


def duplicate_lines(frame: pd.DataFrame) -> np.ndarray:
    """Lines equal to an earlier one in every identifying column (same sale entered twice).

    A 64-bit hash of the row's codes finds candidates fast; candidates are then compared
    exactly, so a hash collision can never produce a false warning.
    """
    columns = [c for c in DUPLICATE_KEY if c in frame.columns]
    mixed = np.zeros(len(frame), dtype=np.uint64)
    for column in columns:
        mixed = _splitmix(mixed ^ _codes(frame[column]).view(np.uint64))
    candidates = pd.Series(mixed).duplicated(keep=False).to_numpy()
    duplicated = np.zeros(len(frame), dtype=bool)
    if candidates.any():
        exact = frame.loc[candidates, columns].duplicated(keep="first").to_numpy()
        duplicated[np.flatnonzero(candidates)] = exact
    return duplicated


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _codes(column: pd.Series) -> np.ndarray:
    """Integer codes that are equal exactly when values are equal: cheap to group and compare."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return np.asarray(column.cat.codes, dtype=np.int64)
    if column.dtype.kind in "iufMm":
        return np.asarray(column.to_numpy(), dtype=np.float64).view(np.int64)
    return pd.factorize(column, use_na_sentinel=True)[0]


def _outliers(
    frame: pd.DataFrame,
    report: ValidationReport,
    column: str,
    source: str | None,
    threshold: float,
    *,
    log: bool = False,
) -> None:
    """Robust z-score per product (median and MAD), so a product's own history is the yardstick."""
    if frame.empty:
        return
    values = frame[column].astype(np.float64)
    if log:
        values = values.where(values > 0).transform(np.log)
    products = _codes(frame["product_id"])
    median = values.groupby(products, sort=False).transform("median")
    deviation = (values - median).abs()
    # Most products sell at one price nearly every time: a MAD of 0 would hide even a 100x
    # typo. The floor (about a 16% price step on the log scale; one unit for quantities) keeps
    # ordinary variation quiet and typos visible.
    floor = 0.15 if log else 1.0
    mad = deviation.groupby(products, sort=False).transform("median").clip(lower=floor) * MAD_SCALE
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (deviation / mad).to_numpy()
    mask = np.nan_to_num(score, nan=0.0, posinf=0.0) > threshold
    typical = np.exp(median) if log else median
    total = int(mask.sum())
    if total == 0:
        return
    picked = frame.loc[mask].head(report.max_detailed)
    issues = [
        Issue(
            Severity.WARNING,
            IssueKind.OUTLIER,
            f"{column} {value:g} is far from this product's usual {column} ({usual:g}). "
            "Check it for a typo.",
            row=int(row),
            column=source or column,
            value=f"{value:g}",
        )
        for row, value, usual in zip(
            picked["source_row"],
            picked[column],
            typical[mask].head(report.max_detailed),
            strict=True,
        )
    ]
    report.add_many(issues, total)


def _time_gaps(
    frame: pd.DataFrame, report: ValidationReport, gap_days: int, source: str | None
) -> None:
    days = np.unique(frame["timestamp"].to_numpy().astype("datetime64[D]"))
    if len(days) < 2:
        return
    steps = np.diff(days).astype(np.int64)
    for index in np.flatnonzero(steps - 1 > gap_days):  # more than gap_days empty days
        start = days[index] + np.timedelta64(1, "D")
        end = days[index + 1] - np.timedelta64(1, "D")
        report.warning(
            IssueKind.TIME_GAP,
            f"No sales from {start} to {end} ({int(steps[index]) - 1} days). Was the shop "
            "closed, or is that period missing from the export?",
            column=source,
        )


def check_tasks(
    frame: pd.DataFrame | None,
    report: ValidationReport,
    mapped: set[str],
    settings: ValidationSettings,
    *,
    strict: bool,
) -> None:
    """Say, per task, whether this data can take part and, if not, exactly what is missing."""
    readiness: dict[Task, TaskReadiness] = {}
    for task in sorted(settings.tasks):
        missing = [f"column {name}" for name in fields_required_for(task) if name not in mapped]
        if task is Task.BUNDLES and not any(b in mapped for b in BASKET_FIELDS):
            missing.append(
                "column transaction_id or customer_id (to know what was bought together)"
            )
        minimum = settings.minimums[task]
        if frame is None and not missing:
            missing.append("readable rows")
        if frame is not None and not missing:
            rows = len(frame)
            stamps = frame["timestamp"]
            days = (stamps.max().normalize() - stamps.min().normalize()).days + 1 if rows else 0
            products = frame["product_id"].nunique()
            if rows < minimum.rows:
                missing.append(f"at least {minimum.rows} rows (has {rows})")
            if days < minimum.days_of_history:
                missing.append(f"at least {minimum.days_of_history} days of history (has {days})")
            if products < minimum.products:
                missing.append(f"at least {minimum.products} products (has {products})")
            if minimum.baskets:
                baskets = count_baskets(frame)
                if baskets < minimum.baskets:
                    missing.append(f"at least {minimum.baskets} baskets (has {baskets})")
        readiness[task] = TaskReadiness(ready=not missing, missing=missing)
    report.tasks = {task.value: r for task, r in readiness.items()}
    none_ready = not any(r.ready for r in readiness.values())
    for task, r in readiness.items():
        if r.ready:
            continue
        message = f"Not enough for {task.label}: needs " + "; ".join(r.missing) + "."
        blocking = strict or none_ready
        report.add(
            Issue(
                Severity.ERROR if blocking else Severity.WARNING, IssueKind.TASK_NOT_READY, message
            )
        )


def count_baskets(frame: pd.DataFrame) -> int:
    """Receipts when the export has them, else one basket per customer per day."""
    if "transaction_id" in frame.columns and frame["transaction_id"].notna().any():
        return int(frame["transaction_id"].nunique())
    if "customer_id" in frame.columns:
        known = frame[frame["customer_id"].notna()]
        return len(known.groupby([known["customer_id"], known["timestamp"].dt.date]))
    return 0
