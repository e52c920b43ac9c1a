"""The versioned category taxonomy that every retailer's own categories map onto.

Category-level model parameters (elasticities, seasonality, associations) only mean the same
thing across retailers when "Getränke", "Soft drinks" and "BEVERAGES" land on the same code. The
taxonomy ships as a data file whose version travels with every model and mapping.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class CategoryMatch:
    """A suggested taxonomy code for one of the retailer's own category labels."""

    source: str
    code: str
    confidence: float


def normalise_label(text: str) -> str:
    """Fold case, accents, umlauts and punctuation so labels from any export compare equal."""
    text = text.strip().lower()
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.replace(umlaut, plain)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return text.strip()


@dataclass(frozen=True)
class Taxonomy:
    version: str
    categories: tuple[Category, ...]
    fallback: str

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(category.code for category in self.categories)

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def match(self, label: str) -> CategoryMatch:
        """Suggest the taxonomy code for one retailer label; unknown labels go to the fallback."""
        key = normalise_label(label)
        if not key:
            return CategoryMatch(label, self.fallback, 0.0)
        for category in self.categories:
            if key == category.code.replace("_", " ") or key == normalise_label(category.name):
                return CategoryMatch(label, category.code, 1.0)
        for category in self.categories:
            if key in category.synonyms:
                return CategoryMatch(label, category.code, 0.95)
        words = set(key.split())
        best: tuple[float, str] = (0.0, self.fallback)
        for category in self.categories:
            for synonym in category.synonyms:
                synonym_words = set(synonym.split())
                overlap = len(words & synonym_words) / len(words | synonym_words)
                if overlap > best[0]:
                    best = (overlap, category.code)
        if best[0] >= 0.3:
            return CategoryMatch(label, best[1], round(0.5 + 0.4 * best[0], 2))
        return CategoryMatch(label, self.fallback, 0.0)

    def suggest(self, labels: Iterable[str]) -> dict[str, CategoryMatch]:
        return {label: self.match(label) for label in labels}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "retail-taxonomy",
            "version": self.version,
            "fallback": self.fallback,
            "categories": [
                {"code": c.code, "name": c.name, "synonyms": list(c.synonyms)}
                for c in self.categories
            ],
        }


def _from_json(data: Mapping[str, Any]) -> Taxonomy:
    categories = tuple(
        Category(
            code=str(item["code"]),
            name=str(item["name"]),
            synonyms=tuple(normalise_label(s) for s in item.get("synonyms", [])),
        )
        for item in data["categories"]
    )
    fallback = str(data.get("fallback", "other"))
    if fallback not in {c.code for c in categories}:
        raise ValueError(f"taxonomy fallback {fallback!r} is not one of its categories")
    return Taxonomy(version=str(data["version"]), categories=categories, fallback=fallback)


@cache
def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """The shipped taxonomy, or a coordinator-published one read from ``path``."""
    if path is None:
        text = resources.files("shared").joinpath("data/taxonomy.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return _from_json(json.loads(text))
