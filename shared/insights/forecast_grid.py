"""Product x day grids of expected and actual units, as a forecast made at one origin sees them.

A forecast does not know future prices or promotions. From an origin it assumes, per product:
the current price (median regular price over the last four selling weeks before the origin), no
promotion, and the last competitor price carried forward. Calendar terms come from
``calendar_features``. The shop is assumed closed on weekdays it opened on fewer than half of in
the last eight weeks, and on dates whose calendar day a year earlier was an isolated closure
(a public holiday). Products whose last sale lies more than ``dormant_days`` before the last
day of data (the day before the origin) get no forecast. The calibration in
``forecast_calibration`` builds exactly the same grids at an origin inside the holdout, so the
intervals are calibrated on the situation they are used in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from shared.model import DRIVERS, DemandData, DemandModel, calendar_features
from shared.model.features import WEEKDAYS

DAY = np.timedelta64(1, "D")
OPEN_LOOKBACK_DAYS = 56
DAYS_IN_YEAR = 365
HOLIDAY_NEIGHBOURS = 3  # an isolated closure: the shop was open on most of the days around it
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def day(value: object) -> np.datetime64:
    """Any date-like value as numpy datetime64[D]."""
    return np.datetime64(pd.Timestamp(str(value)).strftime("%Y-%m-%d"), "D")


def day_range(start: np.datetime64, days: int) -> np.ndarray:
    """``days`` consecutive dates from ``start``."""
    return start + np.arange(days) * DAY


def weekday_of(dates: np.ndarray) -> np.ndarray:
    """Monday = 0, as in ``calendar_features``."""
    return np.asarray((dates.astype("datetime64[D]").astype(np.int64) + 3) % 7, dtype=np.int64)


def product_categories(data: DemandData) -> np.ndarray:
    """Category index (taxonomy order) of every product in ``data.product_ids``."""
    out = np.zeros(data.n_products, dtype=np.int64)
    out[data.product.numpy()] = data.category.numpy()
    return out


@dataclass(frozen=True)
class Scenario:
    """Everything a forecast from ``origin`` assumes about the days from ``origin`` on."""

    origin: np.datetime64  # first forecast day
    products: np.ndarray  # indices into data.product_ids of the products forecast
    drivers: np.ndarray  # (len(products), len(DRIVERS)) future drivers per product
    last_sale: np.ndarray  # datetime64[D] per forecast product (before origin)
    open_weekdays: np.ndarray  # (7,) bool
    open_history: np.ndarray  # sorted datetime64[D]: days before origin the shop sold anything
    first_day: np.datetime64
    # The last day whose calendar the model's seasonal weights were fitted on (<= origin - 1).
    seen_last: np.datetime64

    def open_mask(self, dates: np.ndarray) -> np.ndarray:
        """Which future dates the shop is assumed open on."""
        mask = self.open_weekdays[weekday_of(dates)]
        return np.asarray(mask & ~self._holidays(dates), dtype=bool)

    def _holidays(self, dates: np.ndarray) -> np.ndarray:
        """Dates whose calendar day a year earlier was a closed day among open neighbours."""
        stamps = pd.DatetimeIndex(dates.astype("datetime64[ns]"))
        earlier = (stamps - pd.DateOffset(years=1)).to_numpy().astype("datetime64[D]")
        out = np.zeros(len(dates), dtype=bool)
        for i, past in enumerate(earlier):
            if past < self.first_day + HOLIDAY_NEIGHBOURS * DAY or past >= self.origin:
                continue
            if not self.open_weekdays[weekday_of(np.array([past]))[0]] or self.is_open(past):
                continue
            around = (
                past
                + np.concatenate(
                    [np.arange(-HOLIDAY_NEIGHBOURS, 0), np.arange(1, HOLIDAY_NEIGHBOURS + 1)]
                )
                * DAY
            )
            around = around[around < self.origin]
            out[i] = sum(self.is_open(d) for d in around) >= len(around) - 1
        return out

    def calendar(self, dates: np.ndarray) -> np.ndarray:
        """Calendar features for ``dates``, without extrapolating the yearly season.

        With less than a year between the history's first day and the last day the model's
        seasonal weights were fitted on (``seen_last``), some days of the year were never seen:
        those between ``seen_last`` and the first day a year later. There the yearly Fourier
        terms extrapolate and can explode (a season fitted on a few months), so the features
        are interpolated linearly between those of ``seen_last`` and of the first day: the
        yearly log-effect runs straight from the last value seen to the value seen a year
        earlier. Seen days keep their own features.
        """
        out = calendar_features(dates)
        seen = int((self.seen_last - self.first_day) // DAY) + 1
        gap = DAYS_IN_YEAR - seen
        if gap <= 0 or len(dates) == 0:
            return out
        lead = ((dates - self.seen_last) // DAY).astype(np.int64) - 1
        unseen = (lead >= 0) & (lead % DAYS_IN_YEAR < gap)
        if not unseen.any():
            return out
        ends = calendar_features(np.array([self.seen_last, self.first_day]))
        share = ((lead[unseen] % DAYS_IN_YEAR + 1) / (gap + 1))[:, None]
        out[unseen, WEEKDAYS:] = (1.0 - share) * ends[0, WEEKDAYS:] + share * ends[1, WEEKDAYS:]
        return out

    def is_open(self, date: np.datetime64) -> bool:
        """Whether the shop sold anything on ``date`` (before the origin)."""
        index = np.searchsorted(self.open_history, date)
        return bool(index < len(self.open_history) and self.open_history[index] == date)


def scenario_at(
    data: DemandData,
    facts: pd.DataFrame,
    origin: np.datetime64,
    dormant_days: int,
    model_seen_last: np.datetime64 | None = None,
) -> Scenario:
    """The future-driver rule at ``origin``; ``facts`` are ``product_facts`` as of the origin.

    ``model_seen_last``: the last day of the data the model's seasonal weights were fitted on
    when that is before the origin (a local model fitted on the training part); by default the
    day before the origin.
    """
    facts = facts.reindex(list(data.product_ids))
    last_sale = facts["last_sale"].to_numpy().astype("datetime64[D]")
    # Dormant: the last sale lies more than ``dormant_days`` before the last day of data.
    active = ~np.isnat(last_sale) & (last_sale >= origin - (dormant_days + 1) * DAY)
    products = np.flatnonzero(active)
    reference = data.reference_price[products]
    price = facts["current_price"].to_numpy(np.float64)[products]
    price = np.where(np.isfinite(price) & (price > 0), price, reference)
    competitor = facts["competitor_price"].to_numpy(np.float64)[products]
    present = np.isfinite(competitor) & (competitor > 0)
    drivers = np.zeros((len(products), len(DRIVERS)), dtype=np.float32)
    drivers[:, 0] = np.log(price / reference)
    drivers[present, 2] = np.log(competitor[present] / reference[present])
    drivers[:, 3] = present
    history = np.unique(data.dates[data.dates < origin])
    recent = day_range(origin - OPEN_LOOKBACK_DAYS * DAY, OPEN_LOOKBACK_DAYS)
    recent = recent[recent >= (history[0] if len(history) else origin)]
    open_recent = np.isin(recent, history)
    open_weekdays = np.ones(WEEKDAYS, dtype=bool)
    for weekday in range(WEEKDAYS):
        seen = weekday_of(recent) == weekday
        if seen.any():
            open_weekdays[weekday] = open_recent[seen].mean() >= 0.5
    return Scenario(
        origin=origin,
        products=products,
        drivers=drivers,
        last_sale=last_sale[products],
        open_weekdays=open_weekdays,
        open_history=history,
        first_day=history[0] if len(history) else origin,
        seen_last=min(origin - DAY, model_seen_last if model_seen_last is not None else origin),
    )


@torch.no_grad()
def expected_grid(
    model: DemandModel,
    categories: np.ndarray,
    products: np.ndarray,
    drivers: np.ndarray,
    calendar: np.ndarray,
) -> np.ndarray:
    """Expected units (len(products), len(calendar)) with fixed drivers per product."""
    if len(products) == 0 or len(calendar) == 0:
        return np.zeros((len(products), len(calendar)))
    model.eval()
    n, d = len(products), len(calendar)
    product = torch.from_numpy(np.repeat(products, d).astype(np.int64))
    category = torch.from_numpy(np.repeat(categories[products], d).astype(np.int64))
    driver = torch.from_numpy(np.repeat(np.asarray(drivers, dtype=np.float32), d, axis=0))
    days = torch.from_numpy(np.tile(np.asarray(calendar, dtype=np.float32), (n, 1)))
    log_mean = model(product, category, driver, days).double()
    return np.asarray(torch.exp(log_mean).numpy().reshape(n, d), dtype=np.float64)


def forecast_grid(
    model: DemandModel, data: DemandData, scenario: Scenario, days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dates from the origin and the forecast rule's expected units per product and date."""
    dates = day_range(scenario.origin, days)
    mean = expected_grid(
        model,
        product_categories(data),
        scenario.products,
        scenario.drivers,
        scenario.calendar(dates),
    )
    return dates, mean * scenario.open_mask(dates)[None, :]


def recent_expected(
    model: DemandModel, data: DemandData, scenario: Scenario, days: int
) -> np.ndarray:
    """What the model expected in the ``days`` before the origin, per forecast product.

    Days with a product-day row use its actual drivers (prices, promotions), so the comparison
    with actual units isolates what the model does not explain. Open days after the product's
    last sale have no row; they get the forecast rule, since the shelf price is the current one.
    """
    dates = day_range(scenario.origin - days * DAY, days)
    out = expected_grid(
        model,
        product_categories(data),
        scenario.products,
        scenario.drivers,
        scenario.calendar(dates),
    )
    out *= np.isin(dates, scenario.open_history)[None, :]
    position = np.full(data.n_products, -1, dtype=np.int64)
    position[scenario.products] = np.arange(len(scenario.products))
    row_product = data.product.numpy()
    in_window = (data.dates >= dates[0]) & (data.dates < scenario.origin)
    in_window &= position[row_product] >= 0
    rows = np.flatnonzero(in_window)
    rows = rows[data.dates[rows] <= scenario.last_sale[position[row_product[rows]]]]
    if len(rows):
        index = torch.from_numpy(rows)
        model.eval()
        with torch.no_grad():
            log_mean = model(
                data.product[index],
                data.category[index],
                data.drivers[index],
                torch.from_numpy(scenario.calendar(data.dates[rows])),
            )
        column = ((data.dates[rows] - dates[0]) // DAY).astype(np.int64)
        out[position[row_product[rows]], column] = torch.exp(log_mean.double()).numpy()
    # Before its first sale a product was not on sale yet: nothing was expected of it.
    first_sale = np.full(data.n_products, np.datetime64("9999-12-31"), dtype="datetime64[D]")
    np.minimum.at(first_sale, row_product, data.dates)
    out[dates[None, :] < first_sale[scenario.products][:, None]] = 0.0
    return out


def actual_units(
    frame: pd.DataFrame,
    keys: list[str],
    start: np.datetime64,
    days: int,
    category_of: dict[str, str] | None = None,
) -> np.ndarray:
    """Units sold per key and day from ``start``: keys are product ids, or categories when
    ``category_of`` (product -> category) is given; a product missing from it counts under the
    frame's own category column. Returns are netted and each product-day is floored at zero,
    as in the demand model's examples; keys without sales sell 0."""
    out = np.zeros((len(keys), days), dtype=np.float64)
    if frame.empty or not keys or days <= 0:
        return out
    stamps = frame["timestamp"].to_numpy().astype("datetime64[D]")
    inside = (stamps >= start) & (stamps < start + days * DAY)
    if not inside.any():
        return out
    rows = pd.DataFrame(
        {
            "product": frame.loc[inside, "product_id"].astype(str).to_numpy(),
            "column": ((stamps[inside] - start) // DAY).astype(np.int64),
            "units": frame.loc[inside, "quantity_sold"]
            .astype("Float64")
            .fillna(0.0)
            .to_numpy(np.float64),
        }
    )
    rows["own"] = (
        frame.loc[inside, "category"].astype(str).to_numpy() if "category" in frame.columns else ""
    )
    per_day = rows.groupby(["product", "column"], sort=False).agg(
        units=("units", "sum"), own=("own", "first")
    )
    per_day = per_day.reset_index()
    if category_of is None:
        key = per_day["product"]
    else:
        key = per_day["product"].map(category_of).fillna(per_day["own"])
    index = {name: i for i, name in enumerate(keys)}
    row = key.map(index).to_numpy(dtype=np.float64, na_value=np.nan)
    known = np.isfinite(row)
    units = per_day["units"].clip(lower=0).to_numpy(np.float64)
    column = per_day["column"].to_numpy(np.int64)
    np.add.at(out, (row[known].astype(np.int64), column[known]), units[known])
    return out


def block_sums(daily: np.ndarray, length: int, step: int) -> np.ndarray:
    """Sums over windows of ``length`` days starting every ``step`` days (last axis)."""
    total = daily.shape[-1]
    if length > total:
        return np.zeros((*daily.shape[:-1], 0))
    cumulative = np.concatenate(
        [np.zeros((*daily.shape[:-1], 1)), np.cumsum(daily, axis=-1)], axis=-1
    )
    starts = np.arange(0, total - length + 1, step)
    return np.asarray(cumulative[..., starts + length] - cumulative[..., starts], np.float64)


def calendar_weights(model: DemandModel, category: int) -> np.ndarray:
    """The calendar coefficients one category's products use (shared body + category part)."""
    weight = model.calendar.weight.detach().double().numpy()[0]
    return np.asarray(
        weight + model.category_calendar.weight.detach().double().numpy()[category],
        dtype=np.float64,
    )


def weekday_factors(
    model: DemandModel, category: int, open_weekdays: np.ndarray
) -> dict[str, float]:
    """Multiplier per weekday (mon..sun) with mean 1; weekdays the shop is closed get 0."""
    effect = np.exp(calendar_weights(model, category)[:WEEKDAYS]) * open_weekdays
    total = effect.sum()
    factors = effect * WEEKDAYS / total if total > 0 else np.ones(WEEKDAYS)
    return {name: round(float(f), 4) for name, f in zip(WEEKDAY_NAMES, factors, strict=True)}


def yearly_factor(
    model: DemandModel, category: int, scenario: Scenario, dates: np.ndarray
) -> float:
    """Mean yearly-season multiplier over ``dates`` relative to the year's average (1 = a usual
    time of year), both as the forecast sees the season (``Scenario.calendar``)."""
    if len(dates) == 0:
        return 1.0
    weights = calendar_weights(model, category)[WEEKDAYS:]
    year = scenario.calendar(day_range(scenario.first_day, DAYS_IN_YEAR))
    period = np.exp(scenario.calendar(dates)[:, WEEKDAYS:].astype(np.float64) @ weights)
    usual = np.exp(year[:, WEEKDAYS:].astype(np.float64) @ weights)
    return round(float(period.mean() / usual.mean()), 4)


def recent_weeks(
    model: DemandModel, data: DemandData, frame: pd.DataFrame, scenario: Scenario, weeks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Actual and model-expected units per forecast product in each of the last ``weeks``
    7-day blocks before the origin (oldest first): the inputs of the trend analysis."""
    days = 7 * weeks
    ids = [data.product_ids[i] for i in scenario.products]
    actual = actual_units(frame, ids, scenario.origin - days * DAY, days)
    expected = recent_expected(model, data, scenario, days)
    return block_sums(actual, 7, 7), block_sums(expected, 7, 7)
