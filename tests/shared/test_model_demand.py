"""Demand model structure: sign-constrained elasticity and the federated/local parameter split."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shared.model import FEDERATED_PARAMETERS, DemandModel
from shared.model.design import jacobian
from tests.shared.test_model_support import toy_data

N_CATEGORIES = 18


@settings(max_examples=150, deadline=None)
@given(
    raw=arrays(
        np.float32,
        (N_CATEGORIES, 1),
        elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    )
)
def test_elasticity_is_negative_for_any_parameters(raw: np.ndarray) -> None:
    """Feature: retail-intelligence-platform, Property 6: Multi-Task Model Support.

    The price response the pricing engine reads is a demand model output that can never be
    positive, whatever values training or aggregation put into the raw parameter.
    """
    model = DemandModel(("a",), node="n")
    with torch.no_grad():
        model.elasticity_raw.weight.copy_(torch.from_numpy(raw))
    values = np.array(list(model.elasticities().values()))
    assert np.all(values <= 0.0)
    assert np.all(np.isfinite(values))


def test_federated_parameters_exclude_offsets_and_round_trip() -> None:
    model = DemandModel(("a", "b", "c"), node="n")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    arrays_ = model.federated_parameters()
    assert len(arrays_) == len(FEDERATED_PARAMETERS)
    assert "product_offset.weight" not in FEDERATED_PARAMETERS
    assert all(a.shape[0] != 3 for a in arrays_)  # no per-product array travels
    offsets = model.local_parameters()

    other = DemandModel(("x", "y"), node="m")  # another shop: other products, same taxonomy
    other.set_federated_parameters(arrays_)
    for mine, theirs in zip(arrays_, other.federated_parameters(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert other.elasticities() == model.elasticities()
    np.testing.assert_array_equal(model.local_parameters()[0], offsets[0])
    assert other.local_parameters()[0].shape == (2, 1)


def test_closed_form_jacobian_matches_autograd() -> None:
    data = toy_data(seed=3, products=4, days=20)
    model = DemandModel(data.product_ids, node=data.node)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    dense = jacobian(model, data).to_dense()
    for row in range(0, len(data), 7):
        model.zero_grad()
        out = model(
            data.product[row : row + 1],
            data.category[row : row + 1],
            data.drivers[row : row + 1],
            data.calendar[row : row + 1],
        )
        out.sum().backward()
        grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])  # type: ignore[union-attr]
        torch.testing.assert_close(dense[row].float(), grad, atol=1e-5, rtol=1e-4)
