"""Generate a whole demo: the world, N retailers, their export files and ground_truth.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.synthetic.ground_truth import (
    GENERATOR_VERSION,
    build_ground_truth,
    retailer_truth,
    write_ground_truth,
)
from shared.synthetic.manifest import DemoManifest, RetailerEntry
from shared.synthetic.profiles import build_profiles
from shared.synthetic.retailers import simulate_retailer
from shared.synthetic.world import build_world
from shared.synthetic.writers import write_export
from shared.taxonomy import load_taxonomy


def generate_demo(out_dir: Path, retailers: int, seed: int, *, scale: float = 1.0) -> DemoManifest:
    """Write ``retailers`` synthetic exports and their ground truth under ``out_dir``.

    The same seed (and scale and count) always writes the same files byte for byte; ``scale``
    multiplies daily traffic, so 0.2 gives quick test data and 1.0 a realistic demo.
    """
    if retailers < 1:
        raise ValueError("retailers must be at least 1")
    if not scale > 0:
        raise ValueError("scale must be positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taxonomy = load_taxonomy()
    rng = np.random.default_rng(seed)
    world = build_world(taxonomy, rng)
    profiles = build_profiles(world, retailers, scale, taxonomy, rng)
    children = rng.spawn(retailers)
    truths = []
    entries = []
    for profile, child in zip(profiles, children, strict=True):
        sales = simulate_retailer(profile, world, child)
        relative = f"{profile.retailer_id}/{profile.dialect.file_name}"
        path = out_dir / relative
        write_export(sales.frame, profile.dialect, sales.exported_columns, path)
        truth = retailer_truth(sales, relative)
        truths.append(truth)
        entries.append(
            RetailerEntry(
                retailer_id=profile.retailer_id,
                dialect=profile.dialect.name,
                path=path,
                relative_path=relative,
                rows=truth["rows"],
                products=truth["products"],
                baskets=truth["baskets"],
                total_quantity=truth["total_quantity"],
                total_revenue=truth["total_revenue"],
                categories=profile.categories,
                category_labels=dict(truth["category_labels"]),
                exported_columns=sales.exported_columns,
                stockout_days=sales.stockout_days,
                size=profile.size,
            )
        )
    ground_truth = build_ground_truth(world, seed, scale, truths)
    truth_path = write_ground_truth(ground_truth, out_dir)
    return DemoManifest(
        out_dir=out_dir,
        seed=seed,
        scale=scale,
        generator_version=GENERATOR_VERSION,
        taxonomy_version=world.taxonomy_version,
        start_date=world.start,
        end_date=world.end,
        ground_truth_path=truth_path,
        retailers=tuple(entries),
    )
