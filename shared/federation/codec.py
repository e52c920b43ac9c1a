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


# Basket statistics are counts (thousands), far outside SecAgg+'s range: they travel divided by
# this scale, which bounds one node's cell at 8 x 32768 = 262144 baskets and keeps SecAgg+'s
# quantisation step (16 / 2**22 of the range) at 0.125 of a count, well under the DP noise.
STATISTICS_SCALE = 32_768.0


def encode_statistics(vector: np.ndarray) -> list[np.ndarray]:
    """A node's noised counts as one array inside SecAgg+'s range (clipped: post-processing)."""
    scaled = np.asarray(vector, dtype=np.float64) / STATISTICS_SCALE
    return [np.clip(scaled, -SECAGG_CLIPPING_RANGE, SECAGG_CLIPPING_RANGE)]


def decode_statistics_sum(mean: list[np.ndarray], contributors: int) -> np.ndarray:
    """SecAgg+ returns the mean over ``contributors`` nodes of equal weight; this is the sum."""
    if len(mean) != 1:
        raise ValueError("statistics travel as a single array")
    return np.asarray(mean[0], dtype=np.float64).ravel() * STATISTICS_SCALE * contributors
