"""Flower 1.42's SecAgg+ arithmetic, step by step, without messaging (for tests and benchmarks).

Each function repeats what one stage of ``flwr.client.mod.secaggplus_mod`` (node) or
``flwr.server.workflow.secaggplus_workflow`` (server) computes, calling the same Flower
primitives in the same order, so the property test and the benchmark exercise Flower's own
math: key agreement, Shamir sharing, ratio quantisation, masking, unmasking and dequantisation.
Only the transport (messages, timeouts) is left out. Pure helpers are memoised where the
protocol would recompute the same value from the same inputs (ECDH of a cached key pair).
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
    decrypt,
    encrypt,
    generate_shared_key,
)
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_combine,
    factor_extract,
    get_parameters_shape,
    parameters_addition,
    parameters_mod,
    parameters_multiply,
    parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from flwr.common.secure_aggregation.secaggplus_utils import (
    pseudo_rand_gen,
    share_keys_plaintext_concat,
    share_keys_plaintext_separate,
)
from flwr.supercore.primitives.asymmetric import (
    bytes_to_private_key,
    bytes_to_public_key,
    generate_key_pairs,
    private_key_to_bytes,
    public_key_to_bytes,
)

# SecAggPlusWorkflow's defaults, which shared.federation.workflow keeps (clipping range explicit)
CLIPPING_RANGE = 8.0
QUANTIZATION_RANGE = 2**22
MODULUS_RANGE = 2**32


class NotEnoughShares(RuntimeError):
    """The server holds fewer shares of a secret than the threshold: the round cannot unmask."""


@dataclass(frozen=True)
class KeyPairs:
    """A node's two SecAgg+ key pairs, as bytes (``_setup``)."""

    sk1: bytes
    pk1: bytes
    sk2: bytes
    pk2: bytes


def new_key_pairs() -> KeyPairs:
    sk1, pk1 = generate_key_pairs()
    sk2, pk2 = generate_key_pairs()
    return KeyPairs(
        private_key_to_bytes(sk1),
        public_key_to_bytes(pk1),
        private_key_to_bytes(sk2),
        public_key_to_bytes(pk2),
    )


@functools.lru_cache(maxsize=65_536)
def shared_key(private_key: bytes, public_key: bytes) -> bytes:
    """ECDH + HKDF exactly as both sides call it (memoised: a pure function of the two keys)."""
    return generate_shared_key(bytes_to_private_key(private_key), bytes_to_public_key(public_key))


def neighbours_of(node_ids: list[int], num_shares: int, rng: random.Random) -> dict[int, set[int]]:
    """The workflow's neighbour graph: shuffled ring, ``num_shares >> 1`` either side (+ self)."""
    order = list(node_ids)
    rng.shuffle(order)
    half = num_shares >> 1
    return {
        nid: {order[(idx + offset) % len(order)] for offset in range(-half, half + 1)}
        for idx, nid in enumerate(order)
    }


@dataclass
class Node:
    """One node's protocol state (``SecAggPlusState``)."""

    nid: int
    keys: KeyPairs
    threshold: int
    share_num: int
    rd_seed: bytes = b""
    public_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    rd_seed_shares: dict[int, bytes] = field(default_factory=dict)
    sk1_shares: dict[int, bytes] = field(default_factory=dict)

    def share_keys(
        self,
        public_keys: dict[int, tuple[bytes, bytes]],
        sk1_shares: list[bytes] | None = None,
        with_sk1: bool = True,
        seed: tuple[bytes, list[bytes]] | None = None,
    ) -> dict[int, bytes]:
        """Stage 1: Shamir-share the mask seed and sk1, encrypt one share pair per neighbour.

        ``sk1_shares`` may pass pre-made shares of this node's (cached) sk1 and ``seed`` a
        pre-made (seed, shares) pair (tests reuse them across rounds; Flower draws a fresh seed
        per round); ``with_sk1=False`` shares an empty secret key instead (only for benchmarks
        in which nobody drops out, so sk1 is never reconstructed).
        """
        if len(public_keys) < self.threshold:
            raise ValueError("Available neighbours number smaller than threshold")
        self.public_keys = public_keys
        if seed is None:
            self.rd_seed = os.urandom(32)
            b_shares = create_shares(self.rd_seed, self.threshold, self.share_num)
        else:
            self.rd_seed, b_shares = seed
        if sk1_shares is None:
            secret = self.keys.sk1 if with_sk1 else b""
            sk1_shares = create_shares(secret, self.threshold, self.share_num)
        out: dict[int, bytes] = {}
        for idx, (nid, (_, pk2)) in enumerate(public_keys.items()):
            if nid == self.nid:
                self.rd_seed_shares[nid] = b_shares[idx]
                self.sk1_shares[nid] = sk1_shares[idx]
                continue
            plaintext = share_keys_plaintext_concat(self.nid, nid, b_shares[idx], sk1_shares[idx])
            out[nid] = encrypt(shared_key(self.keys.sk2, pk2), plaintext)
        return out

    def masked_vector(
        self,
        ciphertexts: dict[int, bytes],
        arrays: list[np.ndarray],
        num_examples: int,
        max_weight: float,
    ) -> list[np.ndarray]:
        """Stage 2 (``_collect_masked_vectors``): decrypt shares, weight, quantise, mask, mod."""
        if len(ciphertexts) + 1 < self.threshold:
            raise ValueError("Not enough available neighbour clients.")
        available: list[int] = []
        for src, ciphertext in ciphertexts.items():
            plaintext = decrypt(shared_key(self.keys.sk2, self.public_keys[src][1]), ciphertext)
            actual_src, dst, rd_seed_share, sk1_share = share_keys_plaintext_separate(plaintext)
            if actual_src != src or dst != self.nid:
                raise ValueError("share delivered to the wrong node")
            available.append(src)
            self.rd_seed_shares[src] = rd_seed_share
            self.sk1_shares[src] = sk1_share

        q_ratio = round(num_examples / max_weight * QUANTIZATION_RANGE)
        dq_ratio = q_ratio / QUANTIZATION_RANGE
        vector = parameters_multiply(arrays, dq_ratio)
        vector = quantize(vector, CLIPPING_RANGE, QUANTIZATION_RANGE)
        vector = factor_combine(q_ratio, vector)
        dims = [a.shape for a in vector]
        vector = parameters_addition(vector, pseudo_rand_gen(self.rd_seed, MODULUS_RANGE, dims))
        for nid in available:
            mask = pseudo_rand_gen(
                shared_key(self.keys.sk1, self.public_keys[nid][0]), MODULUS_RANGE, dims
            )
            if self.nid > nid:
                vector = parameters_addition(vector, mask)
            else:
                vector = parameters_subtraction(vector, mask)
        return parameters_mod(vector, MODULUS_RANGE)

    def unmask(self, active: list[int], dead: list[int]) -> tuple[list[int], list[bytes]]:
        """Stage 3 (``_unmask``): seed shares of active neighbours, sk1 shares of dead ones."""
        if len(active) < self.threshold:
            raise ValueError("Available neighbours number smaller than threshold")
        shares = [self.rd_seed_shares[nid] for nid in active]
        shares += [self.sk1_shares[nid] for nid in dead]
        return active + dead, shares


def sum_masked(vectors: list[list[np.ndarray]]) -> list[np.ndarray]:
    """End of the server's stage 2: add every received masked vector, mod the modulus."""
    total = vectors[0]
    for vector in vectors[1:]:
        total = parameters_addition(total, vector)
    return parameters_mod(total, MODULUS_RANGE)


def server_unmask(
    masked_sum: list[np.ndarray],
    collected: dict[int, list[bytes]],
    active: set[int],
    neighbours: dict[int, set[int]],
    pk1: dict[int, bytes],
    threshold: int,
    combine: Callable[[list[bytes]], bytes] = combine_shares,
) -> list[np.ndarray]:
    """The server's stage 3 arithmetic, line for line as ``SecAggPlusWorkflow.unmask_stage``."""
    masked = masked_sum
    for nid, share_list in collected.items():
        if len(share_list) < threshold:
            raise NotEnoughShares(f"node {nid}: {len(share_list)} shares, {threshold} needed")
        secret = combine(share_list)
        if nid in active:
            private_mask = pseudo_rand_gen(secret, MODULUS_RANGE, get_parameters_shape(masked))
            masked = parameters_subtraction(masked, private_mask)
        else:
            secret_key = bytes_to_private_key(secret)
            for neighbour in neighbours[nid] - {nid}:
                key = generate_shared_key(secret_key, bytes_to_public_key(pk1[neighbour]))
                mask = pseudo_rand_gen(key, MODULUS_RANGE, get_parameters_shape(masked))
                if nid > neighbour:
                    masked = parameters_addition(masked, mask)
                else:
                    masked = parameters_subtraction(masked, mask)
    recon = parameters_mod(masked, MODULUS_RANGE)
    q_total_ratio, recon = factor_extract(recon)
    inv_dq_total_ratio = QUANTIZATION_RANGE / q_total_ratio
    aggregated = dequantize(recon, CLIPPING_RANGE, QUANTIZATION_RANGE)
    offset = -(len(active) - 1) * CLIPPING_RANGE
    for vec in aggregated:
        vec += offset
        vec *= inv_dq_total_ratio
    return aggregated


def q_ratio_of(num_examples: int, max_weight: float) -> int:
    """The integer weight a node folds into its vector (``_collect_masked_vectors``)."""
    return round(num_examples / max_weight * QUANTIZATION_RANGE)


def error_bound(q_ratios: list[int], update_clip: float) -> float:
    """Largest per-coordinate gap between SecAgg+'s mean and the exact weighted mean.

    With m surviving nodes, integer weights q_i = round(w_i / W * Q) and Q = quantization_range:
    * stochastic rounding moves each quantised value by < 1 step of 2c/Q (c = clipping_range);
      the server divides the sum by sum(q_i)/Q, so the mean moves by < 2c * m / sum(q_i);
    * the weights actually applied are q_i/Q instead of w_i/W, |q_i/Q - w_i/W| <= 1/(2Q); the
      normalised weights then differ by at most m / sum(q_i) in total (L1), and every update is
      within +-update_clip, so the mean moves by at most update_clip * m / sum(q_i);
    * float64 rounding in dequantise/offset/rescale and in the reference mean: a few ulps of the
      largest intermediate (2c * m), rescaled by Q / sum(q_i): 16 * eps * (2c + clip) * m * Q/sum.
    """
    m, total = len(q_ratios), float(sum(q_ratios))
    quantisation = 2.0 * CLIPPING_RANGE * m / total
    ratio = update_clip * m / total
    floating = (16.0 * np.finfo(np.float64).eps * (2 * CLIPPING_RANGE + update_clip) * m) * (
        QUANTIZATION_RANGE / total
    )
    return quantisation + ratio + floating
