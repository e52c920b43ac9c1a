"""How an update is shaped for SecAgg+, and how the aggregate becomes the next global model.

SecAgg+ quantises every value inside a fixed clipping range (8.0 by default) and silently
clips anything outside it, which would corrupt the sum. Nodes therefore send the change to the
global model (small numbers) rather than the parameters, each coordinate bounded by a clip the
run settings fix below that range; clipping an already-noised update is post-processing and
costs no privacy.
"""

from __future__ import annotations

import numpy as np

SECAGG_CLIPPING_RANGE = 8.0


def encode_update(delta: list[np.ndarray], clip: float) -> list[np.ndarray]:
    """Bound each coordinate of a released update to [-clip, clip] (clip <= SecAgg+ range)."""
    if not 0.0 < clip <= SECAGG_CLIPPING_RANGE:
        raise ValueError(f"update clip must be in (0, {SECAGG_CLIPPING_RANGE}]")
    return [np.clip(np.asarray(d, dtype=np.float64), -clip, clip) for d in delta]


def apply_update(global_arrays: list[np.ndarray], mean_delta: list[np.ndarray]) -> list[np.ndarray]:
    """Next global model: the current one plus the example-weighted mean of node updates."""
    if len(global_arrays) != len(mean_delta):
        raise ValueError("update and model have different numbers of arrays")
    return [
        (
            np.asarray(g, dtype=np.float64) + np.asarray(d, dtype=np.float64).reshape(np.shape(g))
        ).astype(np.asarray(g).dtype)
        for g, d in zip(global_arrays, mean_delta, strict=True)
    ]


def weighted_mean(updates: list[list[np.ndarray]], weights: list[int]) -> list[np.ndarray]:
    """The plain (unmasked) example-weighted mean SecAgg+ must reproduce; used by tests."""
    total = float(sum(weights))
    means: list[np.ndarray] = []
    for i in range(len(updates[0])):
        acc = np.zeros(np.shape(updates[0][i]), dtype=np.float64)
        for update, weight in zip(updates, weights, strict=True):
            acc += weight * np.asarray(update[i], dtype=np.float64)
        means.append(acc / total)
    return means
