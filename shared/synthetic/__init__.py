"""Synthetic retailers for demos and tests, with a planted market and exact ground truth.

``generate_demo`` writes N retailers' sales exports, each in a different real-world dialect
(semicolon CSV with decimal commas, cp1252 till TSV, Excel, Parquet, ...), plus
``ground_truth.json`` holding the planted elasticities, seasonality, promotion lifts,
complementary pairs and every file's exact totals. Same seed, same bytes.
"""

from shared.synthetic.dialects import (
    DIALECTS,
    DIALECTS_BY_NAME,
    EXCEL_SERIAL,
    NATIVE,
    Dialect,
    IdStyle,
)
from shared.synthetic.generate import generate_demo
from shared.synthetic.ground_truth import GENERATOR_VERSION, GROUND_TRUTH_FILE
from shared.synthetic.manifest import DemoManifest, RetailerEntry
from shared.synthetic.profiles import RetailerProfile
from shared.synthetic.readback import read_export
from shared.synthetic.world import CategoryParams, PlantedPair, World

__all__ = [
    "DIALECTS",
    "DIALECTS_BY_NAME",
    "EXCEL_SERIAL",
    "GENERATOR_VERSION",
    "GROUND_TRUTH_FILE",
    "NATIVE",
    "CategoryParams",
    "DemoManifest",
    "Dialect",
    "IdStyle",
    "PlantedPair",
    "RetailerEntry",
    "RetailerProfile",
    "World",
    "generate_demo",
    "read_export",
]
