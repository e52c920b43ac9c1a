"""Column types and clock helpers shared by every coordinator table and service.

SQLite has no time zones: it hands back naive datetimes. Mixing naive and aware datetimes is a
classic source of off-by-hours expiry bugs, so every timestamp goes through ``UTCDateTime``,
which accepts aware datetimes only, stores UTC, and always returns aware UTC values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator

Clock = Callable[[], datetime]
"""A source of "now": timezone-aware datetimes. Injected so that expiry can be tested."""


def utc_now() -> datetime:
    """The default clock: the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime, *, what: str = "time") -> datetime:
    """``moment`` converted to UTC; naive datetimes are refused (their zone is a guess)."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back as an aware UTC datetime."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = as_utc(value)
        # SQLite stores text without an offset; keep it naive there so comparisons stay textual.
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def plain_json(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data (dicts with str keys, lists, str, int, float, bool, None).

    What is hashed or stored must read back identically, so anything that would not survive a
    JSON round trip unchanged (NaN, infinities, sets, arbitrary objects) is refused with the
    path where it was found; numpy scalars and arrays are turned into Python numbers and lists.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a JSON number")
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not text")
            out[key] = plain_json(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [plain_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        converted = tolist()
        if converted is not value and not hasattr(converted, "tolist"):
            return plain_json(converted, where)
    raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> str:
    """One exact text for a JSON value: sorted keys, no spaces, UTF-8 kept (for hashing)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
