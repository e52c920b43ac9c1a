"""Fit the demand model on one node's own data: plainly, or with DP-SGD (Opacus) for release.

Privacy of product offsets: offsets never leave the node, but the federated update is computed
*through* them, so offsets fitted non-privately on the rows would leak into the update with no
bound from clipping. ``train_private`` therefore trains offsets inside DP-SGD together with the
federated parameters (clipped, noised, never released); the released update is then a
post-processing of DP-SGD output alone. ``fit_offsets`` (closed form, non-private) is for the
plain trainer and for a local inference copy (``personalised``) whose offsets must not feed a
later private round.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from shared.model.demand import DemandModel
from shared.model.design import add_to_parameters, jacobian, weighted_gram
from shared.model.evaluation import EVAL_BATCH, poisson_loss
from shared.model.features import DemandData

OFFSET_PSEUDO_COUNT = 0.1  # keeps a product that never sold at a finite (very low) offset


class ForeignDataError(ValueError):
    """Raised when a model is asked to learn from rows that are not its own node's."""


@dataclass(frozen=True)
class Mechanism:
    """What one DP-SGD run released, in the terms an RDP/PRV accountant needs."""

    noise_multiplier: float
    sample_rate: float
    steps: int


def check_own_data(model: DemandModel, data: DemandData) -> None:
    """Local data exclusivity: a node's model only ever learns from that node's rows."""
    if data.node != model.node or data.product_ids != model.product_ids:
        raise ForeignDataError(
            f"model of node {model.node!r} cannot be trained on data of node {data.node!r}"
        )
    if data.categories != model.categories:
        raise ForeignDataError("data and model use different taxonomy orders")


@torch.no_grad()
def fit_offsets(model: DemandModel, data: DemandData) -> None:
    """Closed-form Poisson MLE of every product offset given the other parameters.

    offset_p = log(sum_i y_i / sum_i exp(eta_i - offset_p)) over product p's rows. Not private.
    """
    check_own_data(model, data)
    rest = torch.zeros(len(data), dtype=torch.float64)
    offset = model.product_offset.weight.squeeze(-1)
    for start in range(0, len(data), EVAL_BATCH):
        end = start + EVAL_BATCH
        eta = model(
            data.product[start:end],
            data.category[start:end],
            data.drivers[start:end],
            data.calendar[start:end],
        )
        rest[start:end] = (eta - offset[data.product[start:end]]).double()
    n = model.product_offset.num_embeddings
    sold = torch.zeros(n, dtype=torch.float64).index_add_(0, data.product, data.quantity.double())
    expected = torch.zeros(n, dtype=torch.float64).index_add_(0, data.product, torch.exp(rest))
    seen = expected > 0
    new = offset.double().clone()
    new[seen] = torch.log((sold[seen] + OFFSET_PSEUDO_COUNT) / expected[seen])
    model.product_offset.weight.copy_(new.float().unsqueeze(-1))


def personalised(model: DemandModel, data: DemandData) -> DemandModel:
    """A copy with offsets refitted on the node's data, for local insights only (never trained on
    privately afterwards, see the module docstring)."""
    copy_ = copy.deepcopy(model)
    fit_offsets(copy_, data)
    return copy_


@torch.no_grad()
def _full_loss(model: DemandModel, data: DemandData) -> float:
    return float(poisson_loss(_log_mean(model, data), data.quantity))


@torch.no_grad()
def _log_mean(model: DemandModel, data: DemandData) -> torch.Tensor:
    return model(data.product, data.category, data.drivers, data.calendar).double()


@torch.no_grad()
def train_local(
    model: DemandModel,
    data: DemandData,
    epochs: int = 50,
    lr: float = 1.0,
    *,
    tolerance: float = 1e-9,
    ridge: float = 1e-6,
) -> list[float]:
    """Non-private, full-batch Fisher scoring (damped Newton) on all parameters.

    For baselines and for what never leaves the node. The model is a Poisson GLM apart from
    the softplus on the elasticity, so Newton steps with the closed-form Jacobian converge in
    a few passes where SGD or L-BFGS stall on its poor conditioning. One epoch is one Newton
    step (``lr`` scales it; halved until the loss falls). ``ridge`` regularises the directions
    the data cannot identify (unused categories, weekday one-hot vs intercept). Returns the
    full-data loss after each step.
    """
    check_own_data(model, data)
    if len(data) == 0:
        return []
    fit_offsets(model, data)
    model.train()
    n = len(data)
    y = data.quantity.double()
    current = _full_loss(model, data)
    history: list[float] = []
    for _ in range(epochs):
        mean = torch.exp(_log_mean(model, data))
        jac = jacobian(model, data)
        hessian = weighted_gram(jac, mean) / n
        gradient = torch.sparse.mm(jac.t(), (mean - y)[:, None]).squeeze(-1) / n
        damping = ridge * float(hessian.diagonal().mean()) + 1e-12
        hessian.diagonal().add_(damping)
        step = -lr * torch.linalg.solve(hessian, gradient)
        improved = False
        for _ in range(30):
            add_to_parameters(model, step)
            trial = _full_loss(model, data)
            if trial <= current:
                improved = True
                break
            add_to_parameters(model, -step)
            step = step / 2
        if not improved:
            break
        change = current - trial
        current = trial
        history.append(current)
        if change < tolerance * max(abs(current), 1.0):
            break
    return history


def _even_batches(n: int, sample_rate: float) -> list[list[int]]:
    """1/q contiguous index blocks, so Opacus (which uses 1 / len(loader)) samples at exactly q."""
    count = max(1, round(1.0 / sample_rate))
    return [block.tolist() for block in np.array_split(np.arange(n), count) if len(block)]


def train_private(
    model: DemandModel,
    data: DemandData,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    sample_rate: float,
    epochs: int,
    lr: float = 0.05,
    seed: int | None = None,
) -> Mechanism:
    """DP-SGD with Poisson sampling over this node's product-day examples.

    Every parameter, including local offsets, is updated only by clipped, noised gradients.
    The sample rate Opacus actually uses is 1 / round(1 / ``sample_rate``) (exactly
    ``sample_rate`` when that is 1/integer); the returned Mechanism reports the rate used.
    ``seed`` makes sampling and noise reproducible (tests); leave it None in production.
    """
    check_own_data(model, data)
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError("sample_rate must be in (0, 1]")
    if len(data) == 0:
        raise ValueError("no training examples")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(
        TensorDataset(*data.tensors()),
        batch_sampler=_even_batches(len(data), sample_rate),
        generator=generator,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    engine = PrivacyEngine()
    private_model, private_optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=True,
        noise_generator=(torch.Generator().manual_seed(seed + 1) if seed is not None else None),
    )
    steps = 0
    try:
        private_model.train()
        for _ in range(epochs):
            for product, category, drivers, calendar, quantity in private_loader:
                private_optimizer.zero_grad()
                # An empty Poisson draw still runs backward (zero-row per-sample gradients) and
                # still releases noise, so it counts as a step.
                log_mean = private_model(product, category, drivers, calendar)
                loss = poisson_loss(log_mean, quantity, reduction="sum") / max(len(quantity), 1)
                loss.backward()
                private_optimizer.step()
                steps += 1
    finally:
        private_model._close()  # remove Opacus hooks; the plain model keeps the trained weights
        for parameter in model.parameters():
            if hasattr(parameter, "grad_sample"):
                del parameter.grad_sample
            parameter.grad = None
    return Mechanism(
        noise_multiplier=float(noise_multiplier),
        sample_rate=float(private_loader.sample_rate),
        steps=steps,
    )
