"""Private and local training: Opacus DP-SGD mechanics, local data exclusivity, intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.model import (
    DemandModel,
    ForeignDataError,
    elasticity_intervals,
    evaluate,
    train_local,
    train_private,
)
from tests.shared.test_model_support import toy_data


def test_train_private_reports_mechanism_and_learns() -> None:
    data = toy_data(seed=1, products=8, days=250)  # 2000 examples
    model = DemandModel(data.product_ids, node=data.node)
    before = evaluate(model, data)["loss"]
    mechanism = train_private(
        model,
        data,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        sample_rate=200 / len(data),
        epochs=4,
        lr=0.05,
        seed=0,
    )
    assert mechanism.sample_rate == pytest.approx(200 / len(data))
    assert mechanism.noise_multiplier == 1.0
    assert mechanism.steps == 4 * 10
    after = evaluate(model, data)["loss"]
    print(f"private loss {before:.3f} -> {after:.3f}")
    assert after < before - 0.1
    assert not hasattr(model.elasticity_raw.weight, "grad_sample")  # Opacus hooks removed
    assert all(v <= 0 for v in model.elasticities().values())


def test_local_training_recovers_elasticity_with_interval() -> None:
    data = toy_data(seed=2, products=10, days=200, elasticity=-1.5)
    model = DemandModel(data.product_ids, node=data.node)
    history = train_local(model, data)
    assert history[-1] <= history[0]
    estimate = model.elasticities()["dairy"]
    interval = elasticity_intervals(model, data)["dairy"]
    print(f"toy elasticity {estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]")
    assert interval.low <= -1.5 <= interval.high
    assert interval.high < 0
    assert set(elasticity_intervals(model, data)) == {"dairy"}  # only categories with data


def test_trainers_refuse_another_nodes_rows() -> None:
    """Feature: retail-intelligence-platform, Property 4: Local Data Exclusivity.

    A node's model only learns from that node's own rows: other nodes' data is refused, and
    its existence does not change what the node learns.
    """
    mine = toy_data(seed=4, node="shop-a", products=5, days=120)
    theirs = toy_data(seed=5, node="shop-b", products=5, days=120, elasticity=-0.5)
    model = DemandModel(mine.product_ids, node="shop-a")
    with pytest.raises(ForeignDataError):
        train_local(model, theirs)
    with pytest.raises(ForeignDataError):
        train_private(
            model, theirs, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.1, epochs=1
        )

    alone = DemandModel(mine.product_ids, node="shop-a")
    train_local(alone, mine)
    _ = toy_data(seed=6, node="shop-c", products=50, days=120)  # more data elsewhere
    again = DemandModel(mine.product_ids, node="shop-a")
    train_local(again, mine)
    for a, b in zip(alone.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert np.isclose(alone.elasticities()["dairy"], again.elasticities()["dairy"])


def test_fedprox_term_keeps_federated_parameters_closer_to_the_start() -> None:
    data = toy_data(seed=3, products=8, days=200)
    moved = {}
    for mu in (0.0, 50.0):
        model = DemandModel(data.product_ids, node=data.node)
        start = [a.copy() for a in model.federated_parameters()]
        mechanism = train_private(
            model,
            data,
            noise_multiplier=0.5,
            max_grad_norm=1.0,
            sample_rate=200 / len(data),
            epochs=3,
            seed=4,
            proximal_mu=mu,
        )
        assert mechanism.steps == 3 * 8  # the proximal term changes nothing in the accounting
        moved[mu] = sum(
            float(np.abs(a - b).sum())
            for a, b in zip(model.federated_parameters(), start, strict=True)
        )
    assert moved[50.0] < 0.5 * moved[0.0]
