"""Property tests: Flower's SecAgg+ arithmetic returns the plain weighted mean of the survivors.

Feature: retail-intelligence-platform, Property 7: Cryptographic Aggregation Integrity

For any set of 5..11 fully connected nodes sending clipped updates (``codec.encode_update``)
weighted by min(examples, max_weight) as ``node.py`` does, and any dropout set the
reconstruction threshold of ``RunSettings.reconstruction_threshold`` tolerates (up to floor(0.3
n) nodes lost after sending their masked vector or before it), the mean recovered by SecAgg+
(node and server arithmetic of Flower 1.42, see ``tests/secagg_protocol.py``) equals
``codec.weighted_mean`` over the nodes whose masked vectors arrived, within the quantisation
bound of ``secagg_protocol.error_bound``; with more dropouts than that the secrets cannot be
recovered."""

from __future__ import annotations

import functools
import math
import os
import random
from dataclasses import dataclass

import numpy as np
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.federation.codec import (
    SECAGG_CLIPPING_RANGE,
    STATISTICS_SCALE,
    decode_statistics_sum,
    encode_statistics,
    encode_update,
    weighted_mean,
)
from shared.federation.settings import MAX_DROPOUT_SHARE, RunSettings
from tests.secagg_protocol import (
    CLIPPING_RANGE,
    KeyPairs,
    Node,
    NotEnoughShares,
    error_bound,
    neighbours_of,
    new_key_pairs,
    q_ratio_of,
    server_unmask,
    sum_masked,
)

RUN = RunSettings()
MAX_NODES = 11  # the fully connected regime (RunSettings.secagg_shares(n) == n)
PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@functools.cache
def key_pool() -> tuple[KeyPairs, ...]:
    """Node key pairs are generated once: ECDH and Shamir on them are what the test exercises."""
    return tuple(new_key_pairs() for _ in range(MAX_NODES))


@functools.cache
def sk1_shares(slot: int, threshold: int, num: int) -> list[bytes]:
    """Shares of a pooled node's sk1 (Flower's ``create_shares``, once per threshold and size)."""
    return create_shares(key_pool()[slot].sk1, threshold, num)


@functools.cache
def seed_and_shares(slot: int, threshold: int, num: int) -> tuple[bytes, list[bytes]]:
    """A pooled node's private-mask seed and its shares (reused across examples for speed)."""
    seed = os.urandom(32)
    return seed, create_shares(seed, threshold, num)


@functools.lru_cache(maxsize=4096)
def _combine_memo(shares: tuple[bytes, ...]) -> bytes:
    return combine_shares(list(shares))


def combine(shares: list[bytes]) -> bytes:
    """Flower's ``combine_shares``, memoised on the exact share list (a pure function).

    Key pairs, seeds and their shares are pooled per node slot, so the same share subsets recur
    across examples; every secret the server uses was still reconstructed by Flower's code.
    """
    return _combine_memo(tuple(shares))


@dataclass(frozen=True)
class Round:
    node_ids: list[int]
    updates: list[list[np.ndarray]]
    weights: list[int]
    drop_before: frozenset[int]  # indices lost before sending a masked vector (after share keys)
    drop_after: frozenset[int]  # indices lost after sending it, before the unmask stage


def run_round(r: Round) -> tuple[list[np.ndarray], list[int]]:
    """Run the four SecAgg+ stages; returns the server's aggregate and the surviving indices."""
    n = len(r.node_ids)
    threshold = RUN.reconstruction_threshold(n)
    keys = key_pool()
    nodes = [Node(nid, keys[i], threshold, n) for i, nid in enumerate(r.node_ids)]
    by_id = {node.nid: node for node in nodes}
    neighbours = neighbours_of(r.node_ids, n, random.Random(n))  # noqa: S311 (graph shuffle)
    public = {node.nid: (node.keys.pk1, node.keys.pk2) for node in nodes}

    # stage 1: every node shares keys (a node lost here or in setup fails the round in Flower)
    forward: dict[int, dict[int, bytes]] = {nid: {} for nid in by_id}
    for i, node in enumerate(nodes):
        own = {nid: public[nid] for nid in sorted(neighbours[node.nid])}
        sent = node.share_keys(
            own, sk1_shares(i, threshold, n), seed=seed_and_shares(i, threshold, n)
        )
        for dst, ciphertext in sent.items():
            forward[dst][node.nid] = ciphertext

    # stage 2: survivors train and send masked vectors; the server adds them up
    survivors = [i for i in range(n) if i not in r.drop_before]
    active = {r.node_ids[i] for i in survivors}
    if any(len(neighbours[nid] & active) < threshold for nid in by_id):
        raise NotEnoughShares("fewer active neighbours than the threshold after stage 2")
    vectors = [
        nodes[i].masked_vector(forward[r.node_ids[i]], r.updates[i], r.weights[i], RUN.max_weight)
        for i in survivors
    ]
    masked_sum = sum_masked(vectors)

    # stage 3: those still there send shares: seeds of the active, sk1 of the dead
    dead = set(by_id) - active
    collected: dict[int, list[bytes]] = {nid: [] for nid in by_id}
    for i in survivors:
        if i in r.drop_after:
            continue
        nid = r.node_ids[i]
        owners, shares = nodes[i].unmask(
            sorted(neighbours[nid] & active), sorted(neighbours[nid] & dead)
        )
        for owner, share in zip(owners, shares, strict=True):
            collected[owner].append(share)
    aggregate = server_unmask(
        masked_sum,
        collected,
        active,
        neighbours,
        {nid: pk1 for nid, (pk1, _) in public.items()},
        threshold,
        combine=combine,
    )
    return aggregate, survivors


@st.composite
def rounds(draw: st.DrawFn, *, over_threshold: bool = False) -> Round:
    n = draw(st.integers(5, MAX_NODES), label="nodes")
    shapes = draw(
        st.lists(st.tuples(st.integers(1, 18), st.integers(1, 11)), min_size=1, max_size=4),
        label="shapes",
    )
    updates = []
    for _ in range(n):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        scale = draw(st.sampled_from([1e-4, 1e-2, 0.5, RUN.update_clip, 2 * RUN.update_clip]))
        raw = [rng.uniform(-scale, scale, size=shape) for shape in shapes]
        updates.append(encode_update(raw, RUN.update_clip))
    examples = draw(st.lists(st.integers(1, 50_000), min_size=n, max_size=n), label="examples")
    weights = [min(e, RUN.max_weight) for e in examples]  # as NodeRuntime.train releases it
    node_ids = draw(
        st.lists(st.integers(1, 2**63 - 1), min_size=n, max_size=n, unique=True), label="ids"
    )
    tolerated = n - RUN.reconstruction_threshold(n)  # == floor(0.3 n) while fully connected
    assert tolerated == math.floor(MAX_DROPOUT_SHARE * n)
    if over_threshold:
        lost = draw(st.integers(tolerated + 1, n - 1), label="lost")
    else:
        lost = draw(st.integers(0, tolerated), label="lost")
    order = draw(st.permutations(range(n)))
    after = draw(st.lists(st.booleans(), min_size=lost, max_size=lost), label="after")
    dropped = order[:lost]
    return Round(
        node_ids=node_ids,
        updates=updates,
        weights=weights,
        drop_before=frozenset(i for i, late in zip(dropped, after, strict=True) if not late),
        drop_after=frozenset(i for i, late in zip(dropped, after, strict=True) if late),
    )


@PROPERTY_SETTINGS
@given(rounds())
def test_secagg_mean_equals_weighted_mean_of_survivors(r: Round) -> None:
    """Feature: retail-intelligence-platform, Property 7: Cryptographic Aggregation Integrity."""
    aggregate, survivors = run_round(r)

    expected = weighted_mean([r.updates[i] for i in survivors], [r.weights[i] for i in survivors])
    q_ratios = [q_ratio_of(r.weights[i], RUN.max_weight) for i in survivors]
    bound = error_bound(q_ratios, RUN.update_clip)
    assert len(aggregate) == len(expected)
    for got, want in zip(aggregate, expected, strict=True):
        assert got.shape == want.shape
        gap = float(np.max(np.abs(got - want)))
        assert gap <= bound, f"SecAgg+ mean off by {gap:.3g} > bound {bound:.3g}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(over_threshold=True))
def test_more_dropouts_than_threshold_cannot_unmask(r: Round) -> None:
    """Losing more than floor(0.3 n) nodes leaves fewer shares than the threshold: no aggregate."""
    try:
        run_round(r)
    except NotEnoughShares:
        return
    raise AssertionError("the server unmasked with fewer shares than the threshold")


@settings(max_examples=30, deadline=None)
@given(st.integers(5, MAX_NODES), st.randoms(use_true_random=False))
def test_fewer_shares_than_threshold_give_a_wrong_secret(n: int, rnd: random.Random) -> None:
    """Shamir with threshold - 1 shares of a mask seed does not return the seed; threshold does."""
    threshold = RUN.reconstruction_threshold(n)
    seed = os.urandom(32)
    shares = create_shares(seed, threshold, n)
    rnd.shuffle(shares)
    assert combine_shares(shares[:threshold]) == seed
    try:
        recovered = combine_shares(shares[: threshold - 1])
    except ValueError:  # Flower's unpadding rejects the garbage
        return
    assert recovered != seed


def test_threshold_matches_flower_constraints() -> None:
    """The run's threshold tolerates floor(0.3 n) losses and is a valid SecAggPlusWorkflow value."""
    assert SECAGG_CLIPPING_RANGE == CLIPPING_RANGE
    for n in range(RUN.min_participants, 200):
        shares = RUN.secagg_shares(n)
        threshold = RUN.reconstruction_threshold(n)
        assert shares == min(n, 11)  # fully connected up to 11, then 11-node neighbourhoods
        tolerated = shares - threshold
        assert tolerated >= math.floor(MAX_DROPOUT_SHARE * shares)  # 30% may drop out
        assert tolerated <= math.ceil(MAX_DROPOUT_SHARE * shares)
        assert 2 <= threshold < shares  # Flower: reconstruction_threshold < num_shares


@st.composite
def statistics_rounds(draw: st.DrawFn) -> tuple[Round, list[np.ndarray]]:
    """Nodes' noised basket-count vectors as NodeRuntime.release_statistics encodes them."""
    n = draw(st.integers(5, MAX_NODES), label="nodes")
    cells = draw(st.integers(1, 60), label="cells")
    counts = []
    for _ in range(n):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        top = draw(st.sampled_from([10, 1_000, 50_000, 250_000]))
        counts.append(rng.integers(0, top, size=cells) + rng.normal(0.0, 20.0, size=cells))
    node_ids = draw(
        st.lists(st.integers(1, 2**63 - 1), min_size=n, max_size=n, unique=True), label="ids"
    )
    lost = draw(st.integers(0, n - RUN.reconstruction_threshold(n)), label="lost")
    dropped = draw(st.permutations(range(n)))[:lost]
    return (
        Round(
            node_ids=node_ids,
            updates=[encode_statistics(c) for c in counts],
            weights=[RUN.max_weight] * n,  # every node weighs the same, as released
            drop_before=frozenset(dropped),
            drop_after=frozenset(),
        ),
        counts,
    )


@PROPERTY_SETTINGS
@given(statistics_rounds())
def test_secagg_statistics_round_returns_the_sum_of_counts(
    case: tuple[Round, list[np.ndarray]],
) -> None:
    """Feature: retail-intelligence-platform, Property 7: Cryptographic Aggregation Integrity.

    The statistics round (bundles, trends): SecAgg+ over counts scaled by STATISTICS_SCALE and
    decoded with the number of survivors gives the plain sum of the survivors' counts, within
    the quantisation error (a fraction of one count per node), for counts up to 250 000."""
    r, counts = case
    aggregate, survivors = run_round(r)
    total = decode_statistics_sum(aggregate, len(survivors))
    expected = np.sum([counts[i] for i in survivors], axis=0)
    q_ratios = [q_ratio_of(r.weights[i], RUN.max_weight) for i in survivors]
    bound = error_bound(q_ratios, CLIPPING_RANGE) * STATISTICS_SCALE * len(survivors)
    gap = float(np.max(np.abs(total - expected)))
    assert gap <= bound, f"statistics sum off by {gap:.3g} > {bound:.3g}"
    assert bound < 0.5 * len(survivors)  # far below the DP noise (sd ~ 20 per node here)
