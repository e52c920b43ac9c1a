from __future__ import annotations

import pytest

from shared.taxonomy import load_taxonomy, normalise_label


def test_taxonomy_is_versioned_with_unique_codes_and_a_fallback() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.version
    assert len(set(taxonomy.codes)) == len(taxonomy.codes)
    assert taxonomy.fallback in taxonomy


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("Soft drinks", "beverages"),
        ("GETRÄNKE", "beverages"),
        ("Backwaren", "bakery"),
        ("Fruits et légumes", "produce"),
        ("Pet food", "pet"),
        ("Dairy and eggs", "dairy"),
        ("Frozen", "frozen"),
    ],
)
def test_retailer_labels_map_onto_taxonomy_codes(label: str, code: str) -> None:
    match = load_taxonomy().match(label)
    assert match.code == code
    assert match.confidence >= 0.5


def test_unknown_label_falls_back_with_zero_confidence() -> None:
    taxonomy = load_taxonomy()
    match = taxonomy.match("Zqxv widgets")
    assert match.code == taxonomy.fallback
    assert match.confidence == 0.0


def test_normalise_label_folds_case_accents_and_punctuation() -> None:
    assert normalise_label("  Café-Bäckerei!! ") == "cafe baeckerei"
