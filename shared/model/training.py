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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from shared.model.demand import FEDERATED_PARAMETERS, DemandModel
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


def _rate_and_steps(sample_rate: float) -> tuple[float, int]:
    """The Poisson rate actually used, 1 / round(1 / q), and the steps in one epoch.

    Exactly what Opacus's DPDataLoader does for a loader of round(1 / q) batches (its
    UniformWithReplacementSampler runs int(1 / rate) steps per epoch).
    """
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError("sample_rate must be in (0, 1]")
    rate = 1.0 / max(1, round(1.0 / sample_rate))
    return rate, int(1.0 / rate)


def _poisson_batches(
    data: DemandData, rate: float, steps: int, generator: torch.Generator | None
) -> Iterator[tuple[torch.Tensor, ...]]:
    """``steps`` Poisson draws: each example independently with probability ``rate``.

    The same draw as Opacus's UniformWithReplacementSampler (``rand(n) < rate``), but indexing
    the tensors directly instead of collating examples one by one through a DataLoader, which
    cost more than the training step itself. An empty draw yields zero-row tensors.
    """
    tensors = data.tensors()
    n = len(data)
    for _ in range(steps):
        index = (torch.rand(n, generator=generator) < rate).nonzero().squeeze(-1)
        yield tuple(t[index] for t in tensors)


@contextmanager
def _single_thread() -> Iterator[None]:
    """Batches of a few hundred rows through a few thousand parameters: intra-op threads only
    add synchronisation (measured several times slower with 2 threads on a busy 2-core box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_minibatch(
    model: DemandModel,
    data: DemandData,
    *,
    sample_rate: float,
    epochs: int,
    lr: float = 0.05,
    seed: int | None = None,
) -> int:
    """``train_private``'s loop without privacy (same Poisson batches, loss and optimiser).

    NOT private: for measuring DP-SGD's overhead (tests/benchmarks/dp_overhead.py) and for
    what never leaves the node. Returns the number of optimiser steps.
    """
    check_own_data(model, data)
    if len(data) == 0:
        raise ValueError("no training examples")
    rate, steps_per_epoch = _rate_and_steps(sample_rate)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    steps = 0
    with _single_thread():
        for _ in range(epochs):
            for product, category, drivers, calendar, quantity in _poisson_batches(
                data, rate, steps_per_epoch, generator
            ):
                optimizer.zero_grad()
                log_mean = model(product, category, drivers, calendar)
                loss = poisson_loss(log_mean, quantity, reduction="sum") / max(len(quantity), 1)
                loss.backward()
                optimizer.step()
                steps += 1
    for parameter in model.parameters():
        parameter.grad = None
    return steps


def _set_per_sample_gradients(
    model: DemandModel, batch: tuple[torch.Tensor, ...], parameters: dict[str, nn.Parameter]
) -> None:
    """Exact per-example gradients of the summed Poisson loss, as ``p.grad_sample`` (B, *p.shape).

    Each example reads one row of every parameter (``DemandModel.parameter_rows``), so the
    gradient of its own loss term is zero outside that row and, in that row, equals the
    gradient with respect to its gathered copy of the row: one backward pass over the gathered
    rows gives every example's full gradient. This replaces Opacus's per-module hooks, whose
    bookkeeping dominated the step for a model this small. The sum (not mean) matches what
    Opacus's GradSampleModule hands the optimiser for ``loss_reduction="mean"``.
    """
    product, category, drivers, calendar, quantity = batch
    indices = model.parameter_rows(product, category)
    if set(indices) != set(parameters):
        raise RuntimeError("every trained parameter must get a per-example gradient")
    rows = {
        name: parameters[name].detach()[index].requires_grad_(True)
        for name, index in indices.items()
    }
    log_mean = model.log_mean_from_rows(rows, drivers, calendar)
    loss = poisson_loss(log_mean, quantity, reduction="sum")
    row_grads = torch.autograd.grad(loss, list(rows.values()), allow_unused=True)
    examples = torch.arange(len(quantity))
    for (name, index), row_grad in zip(indices.items(), row_grads, strict=True):
        parameter = parameters[name]
        grad_sample = torch.zeros((len(quantity), *parameter.shape), dtype=parameter.dtype)
        if row_grad is not None:
            grad_sample[examples, index] = row_grad
        parameter.grad_sample = grad_sample  # type: ignore[attr-defined]


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
    proximal_mu: float = 0.0,
) -> Mechanism:
    """DP-SGD with Poisson sampling over this node's product-day examples.

    ``proximal_mu`` > 0 adds FedProx's proximal term mu/2 * ||w - w_start||^2 on the federated
    parameters. Its gradient does not depend on any example, so it is added after clipping and
    noise (post-processing) and costs no privacy.

    Every parameter, including local offsets, is updated only by clipped, noised gradients:
    per-example gradients (computed exactly, see ``_set_per_sample_gradients``) are clipped
    jointly over all parameters to ``max_grad_norm``, summed, noised and scaled by Opacus's
    DPOptimizer, exactly as ``PrivacyEngine.make_private`` would set it up (expected batch
    size int(n * rate), mean reduction). The sample rate used is 1 / round(1 / ``sample_rate``)
    (exactly ``sample_rate`` when that is 1/integer); the returned Mechanism reports the rate
    used and the steps taken. ``seed`` makes sampling and noise reproducible (tests); leave it
    None in production.
    """
    # Imported here: Opacus adds about 4.5 s to every process that only needs the model
    # (insight refreshes, the desktop app); the node's runner loads it while it waits.
    from opacus.optimizers import DPOptimizer

    check_own_data(model, data)
    rate, steps_per_epoch = _rate_and_steps(sample_rate)
    if len(data) == 0:
        raise ValueError("no training examples")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = DPOptimizer(
        torch.optim.Adam(parameters.values(), lr=lr),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=int(len(data) * rate),
        loss_reduction="mean",
        generator=(torch.Generator().manual_seed(seed + 1) if seed is not None else None),
    )
    if proximal_mu < 0:
        raise ValueError("proximal_mu must be >= 0")
    anchors = {
        name: parameters[name].detach().clone()
        for name in FEDERATED_PARAMETERS
        if proximal_mu > 0 and name in parameters
    }
    model.train()
    steps = 0
    try:
        with _single_thread():
            for _ in range(epochs):
                for batch in _poisson_batches(data, rate, steps_per_epoch, generator):
                    optimizer.zero_grad()
                    # An empty Poisson draw still yields (zero-row) per-sample gradients and
                    # still releases noise, so it counts as a step.
                    _set_per_sample_gradients(model, batch, parameters)
                    if optimizer.pre_step():  # clip, noise and scale into .grad
                        with torch.no_grad():
                            for name, anchor in anchors.items():
                                weight = parameters[name]
                                if weight.grad is not None:
                                    weight.grad += proximal_mu * (weight - anchor)
                        optimizer.original_optimizer.step()
                    steps += 1
    finally:
        for parameter in model.parameters():
            for attribute in ("grad_sample", "summed_grad"):
                if hasattr(parameter, attribute):
                    delattr(parameter, attribute)
            parameter.grad = None
    return Mechanism(noise_multiplier=float(noise_multiplier), sample_rate=rate, steps=steps)
