"""Pooled training on synthetic retailers recovers the planted category elasticities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.ingest.pipeline import import_file
from shared.model import build_examples, chronological_split, evaluate, train_centralised
from shared.synthetic import generate_demo


def test_pooled_training_recovers_planted_elasticities(tmp_path: Path) -> None:
    manifest = generate_demo(tmp_path, retailers=4, seed=7, scale=0.4)
    planted = json.loads(manifest.ground_truth_path.read_text())["world"]["categories"]
    datasets = []
    for entry in manifest.retailers:
        frame = import_file(entry.path).frame
        assert frame is not None
        datasets.append(build_examples(frame, entry.retailer_id))
    model, pooled = train_centralised(datasets, epochs=15)
    seen = {pooled.categories[i] for i in pooled.category.unique().tolist()}
    estimates = model.elasticities()
    errors = {code: abs(estimates[code] - planted[code]["elasticity"]) for code in seen}
    median = float(np.median(list(errors.values())))
    print(
        f"pooled elasticity recovery: median abs error {median:.3f} over {len(errors)} categories"
    )
    assert median < 0.5

    train, holdout = chronological_split(pooled)
    assert train.dates.max() < holdout.dates.min()
    assert 0.1 < len(holdout) / len(pooled) < 0.3
    assert np.isfinite(evaluate(model, holdout)["wape"])
