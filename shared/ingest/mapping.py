"""Column mapping: which of the retailer's columns holds which canonical field.

Suggested from header names first (common POS and spreadsheet exports in several languages),
then from value profiles for columns whose names say nothing. A mapping can be read from a
file, and is saved per source (keyed by the file's header signature) so the next import of the
same export needs no questions.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shared.ingest.parsing import (
    FALSE_TOKENS,
    TRUE_TOKENS,
    AmbiguousDates,
    DateOrder,
    parse_timestamp,
)
from shared.schema import FIELD_NAMES, FIELDS_BY_NAME, Kind
from shared.taxonomy import normalise_label

MAPPING_FORMAT = "retail-mapping/1"


def _load_synonyms() -> dict[str, tuple[str, ...]]:
    """Header names seen in POS and spreadsheet exports, per canonical field (shipped data)."""
    text = resources.files("shared").joinpath("data/header_synonyms.json").read_text("utf-8")
    fields: dict[str, list[str]] = json.loads(text)["fields"]
    return {name: tuple(normalise_label(s) for s in names) for name, names in fields.items()}


_SYNONYMS = _load_synonyms()


class MappingFileError(Exception):
    """A mapping file the user gave cannot be used; the message says what to change."""


@dataclass
class ColumnMapping:
    """Which source header holds each canonical field, plus how to read that source."""

    columns: dict[str, str]
    categories: dict[str, str] = field(default_factory=dict)
    date_order: DateOrder | None = None
    decimal: str | None = None
    thousands: str | None = None
    taxonomy_version: str | None = None

    def source_for(self, name: str) -> str | None:
        return self.columns.get(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MAPPING_FORMAT,
            "columns": dict(sorted(self.columns.items(), key=lambda kv: FIELD_NAMES.index(kv[0]))),
            "categories": dict(sorted(self.categories.items())),
            "date_order": self.date_order.value if self.date_order else None,
            "decimal": self.decimal,
            "thousands": self.thousands,
            "taxonomy_version": self.taxonomy_version,
        }

    @classmethod
    def from_json(cls, data: Any, origin: str = "mapping") -> ColumnMapping:
        if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
            raise MappingFileError(
                f'{origin}: expected a JSON object with a "columns" object, e.g. '
                '{"columns": {"product_id": "SKU", "quantity_sold": "Qty"}}.'
            )
        columns: dict[str, str] = {}
        for name, source in data["columns"].items():
            if name not in FIELDS_BY_NAME:
                raise MappingFileError(
                    f"{origin}: {name!r} is not a canonical field. Use one of: "
                    + ", ".join(FIELD_NAMES)
                    + "."
                )
            if not isinstance(source, str) or not source:
                raise MappingFileError(f"{origin}: the column for {name!r} must be a header name.")
            columns[name] = source
        categories = data.get("categories") or {}
        if not isinstance(categories, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in categories.items()
        ):
            raise MappingFileError(f'{origin}: "categories" must map your labels to codes.')
        order = data.get("date_order")
        try:
            date_order = DateOrder(order) if order else None
        except ValueError as exc:
            raise MappingFileError(
                f'{origin}: "date_order" must be "day-first" or "month-first", not {order!r}.'
            ) from exc
        decimal = data.get("decimal")
        if decimal not in (None, ".", ","):
            raise MappingFileError(f'{origin}: "decimal" must be "." or ",".')
        thousands = data.get("thousands")
        if thousands not in (None, ".", ",", " ", "'"):
            raise MappingFileError(f'{origin}: "thousands" must be ".", ",", " " or "\'".')
        if thousands is not None and thousands == decimal:
            raise MappingFileError(f'{origin}: "decimal" and "thousands" must differ.')
        return cls(
            columns=columns,
            categories=dict(categories),
            date_order=date_order,
            decimal=decimal,
            thousands=thousands,
            taxonomy_version=data.get("taxonomy_version"),
        )


def load_mapping(path: Path) -> ColumnMapping:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise MappingFileError(f"{path}: mapping file not found.") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingFileError(f"{path}: not a readable JSON mapping file ({exc}).") from exc
    return ColumnMapping.from_json(data, origin=str(path))


def save_mapping(mapping: ColumnMapping, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(mapping.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Suggestions


@dataclass(frozen=True)
class ColumnSuggestion:
    source: str
    field: str
    confidence: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "field": self.field,
            "confidence": round(self.confidence, 2),
            "reason": self.reason,
        }


@dataclass
class MappingSuggestion:
    columns: list[ColumnSuggestion]
    unmapped_sources: list[str]
    missing_fields: list[str]

    def to_mapping(self, min_confidence: float = 0.5) -> ColumnMapping:
        return ColumnMapping(
            columns={s.field: s.source for s in self.columns if s.confidence >= min_confidence}
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [s.to_json() for s in self.columns],
            "unmapped_sources": list(self.unmapped_sources),
            "missing_fields": list(self.missing_fields),
        }


def header_score(header: str, field_name: str) -> float:
    """How strongly a header name alone says it holds ``field_name`` (0..1)."""
    key = normalise_label(header)
    if not key:
        return 0.0
    synonyms = _SYNONYMS[field_name]
    if key == field_name.replace("_", " ") or key in synonyms:
        return 0.95
    words = set(key.split())
    best = 0.0
    for synonym in synonyms:
        syn_words = set(synonym.split())
        if syn_words <= words:
            best = max(best, 0.55 + 0.35 * len(syn_words) / len(words))
        else:
            best = max(best, 0.6 * len(words & syn_words) / len(words | syn_words))
    return best


@dataclass(frozen=True)
class ValueProfile:
    """What a column's values look like, for columns whose header says nothing."""

    non_null: int
    distinct: int
    numeric: float
    integer: float
    boolean: float
    dates: float
    median: float | None


def profile_column(column: pa.Array | pa.ChunkedArray, sample_size: int = 500) -> ValueProfile:
    values = pc.drop_null(column)
    if len(values) > sample_size:
        values = values.slice(0, sample_size)
    n = len(values)
    if n == 0:
        return ValueProfile(0, 0, 0.0, 0.0, 0.0, 0.0, None)
    text = [str(v).strip() for v in values.to_pylist()]
    distinct = len(set(text))
    cleaned = [re.sub(r"[\s€$£]", "", t).replace(",", ".") for t in text]
    numbers: list[float] = []
    for c in cleaned:
        try:
            numbers.append(float(c))
        except ValueError:
            continue
    numeric = len(numbers) / n
    integer = sum(1 for x in numbers if x.is_integer()) / n
    tokens = TRUE_TOKENS | FALSE_TOKENS
    boolean = sum(1 for t in text if t.lower() in tokens) / n if distinct <= 3 else 0.0
    dates = 0.0
    if numeric < 0.5:
        try:
            parsed, _ = parse_timestamp(pa.array(text), DateOrder.DAY_FIRST)
            dates = 1.0 - float(parsed.invalid.sum() + parsed.missing.sum()) / n
        except AmbiguousDates:
            dates = 0.0
    numbers.sort()
    median = numbers[len(numbers) // 2] if numbers else None
    return ValueProfile(n, distinct, numeric, integer, boolean, dates, median)


def value_score(profile: ValueProfile, field_name: str) -> float:
    """A weak vote from values alone; never as strong as a matching header."""
    if profile.non_null == 0:
        return 0.0
    kind = FIELDS_BY_NAME[field_name].kind
    if kind is Kind.TIMESTAMP:
        return 0.6 * profile.dates
    if kind is Kind.BOOLEAN:
        return 0.5 * profile.boolean
    if kind is Kind.INTEGER and profile.integer > 0.95 and profile.boolean == 0:
        small = profile.median is not None and profile.median <= 20
        if field_name == "quantity_sold":
            return 0.45 if small else 0.2
        return 0.2 if small else 0.4
    if kind is Kind.DECIMAL and profile.numeric > 0.95 and profile.integer < 0.9:
        return 0.4 if field_name == "price" else 0.2
    if kind is Kind.TEXT and profile.numeric < 0.5 and profile.dates < 0.5:
        low_cardinality = profile.distinct <= 40
        if field_name in ("category", "customer_segment"):
            return 0.3 if low_cardinality else 0.0
        if field_name == "product_id":
            return 0.0 if low_cardinality else 0.3
    return 0.0


def suggest_mapping(table: pa.Table) -> MappingSuggestion:
    """Best one-to-one assignment of headers to canonical fields, strongest evidence first."""
    candidates: list[tuple[float, str, str, str]] = []
    profiles: dict[str, ValueProfile] = {}
    for header in table.column_names:
        for field_name in FIELD_NAMES:
            score = header_score(header, field_name)
            if score > 0:
                candidates.append((score, header, field_name, "header"))
    header_matched = {h for s, h, _, _ in candidates if s >= 0.9}
    for header in table.column_names:
        if header in header_matched:
            continue
        profiles[header] = profile_column(table.column(header))
        for field_name in FIELD_NAMES:
            score = value_score(profiles[header], field_name)
            if score > 0:
                candidates.append((score, header, field_name, "values"))
    candidates.sort(key=lambda c: (-c[0], table.column_names.index(c[1]), c[2]))
    used_sources: set[str] = set()
    chosen: dict[str, ColumnSuggestion] = {}
    for score, header, field_name, reason in candidates:
        if header in used_sources or field_name in chosen or score < 0.3:
            continue
        used_sources.add(header)
        chosen[field_name] = ColumnSuggestion(header, field_name, score, reason)
    ordered = [chosen[f] for f in FIELD_NAMES if f in chosen]
    return MappingSuggestion(
        columns=ordered,
        unmapped_sources=[h for h in table.column_names if h not in used_sources],
        missing_fields=[f for f in FIELD_NAMES if f not in chosen],
    )


# --------------------------------------------------------------------------------------------
# Per-source store


def source_key(headers: list[str]) -> str:
    """Same export layout -> same key, whatever the file name or the order of its columns."""
    signature = "\x1f".join(sorted(normalise_label(h) for h in headers))
    return hashlib.sha256(signature.encode("utf-8")).hexdigest()[:20]


@dataclass
class MappingStore:
    """Saved mappings, one JSON file per export layout, in the node's data directory."""

    directory: Path

    def path_for(self, headers: list[str]) -> Path:
        return self.directory / f"{source_key(headers)}.json"

    def load(self, headers: list[str]) -> ColumnMapping | None:
        path = self.path_for(headers)
        if not path.exists():
            return None
        mapping = load_mapping(path)
        if not set(mapping.columns.values()) <= set(headers):
            return None
        return mapping

    def save(self, headers: list[str], mapping: ColumnMapping) -> Path:
        path = self.path_for(headers)
        save_mapping(mapping, path)
        return path
