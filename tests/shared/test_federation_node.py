"""The node's side of a round, without Flower: consent, budget, write-ahead charge, retries."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.federation.node import NodeRuntime, RefusedRound, prepare_node
from shared.federation.server_app import initial_parameters
from shared.federation.settings import RunSettings, SettingsError
from shared.ingest import ImportOptions, import_file
from shared.privacy import release_id_for
from shared.schema import Task
from shared.synthetic import generate_demo


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("node")
    manifest = generate_demo(out / "data", retailers=1, seed=5, scale=0.3)
    frame = import_file(manifest.retailers[0].path, options=ImportOptions()).frame
    assert frame is not None
    return prepare_node(out / "node", frame, "shop-a", (Task.DEMAND_PRICING,))


@pytest.fixture(scope="module")
def runtime(node_dir: Path) -> NodeRuntime:
    return NodeRuntime(node_dir)


SMALL = RunSettings(rounds=2, epsilon_per_round=1.0, batch_size=128, local_epochs=1)


def test_node_with_consent_and_budget_joins_with_a_calibrated_plan(runtime: NodeRuntime) -> None:
    answer = runtime.participation(SMALL)
    assert answer.accept, answer.reason
    assert answer.noise_multiplier > 0
    assert answer.sample_rate == pytest.approx(1 / round(len(runtime.train_data) / 128))
    assert answer.epsilon_after <= answer.epsilon_spent + SMALL.epsilon_per_round + 1e-6


def test_a_round_is_charged_once_even_when_retried(runtime: NodeRuntime) -> None:
    start = initial_parameters()
    first = runtime.train(SMALL, "campaign-retry", 1, start)
    spent = runtime.ledger.spent_epsilon()
    again = runtime.train(SMALL, "campaign-retry", 1, start)
    assert runtime.ledger.spent_epsilon() == spent
    for a, b in zip(first.arrays, again.arrays, strict=True):
        np.testing.assert_array_equal(a, b)  # the same released bytes, not a second release
    assert all(np.abs(a).max() <= SMALL.update_clip for a in first.arrays)
    assert first.weight == min(len(runtime.train_data), SMALL.max_weight)


def test_exhausted_budget_declines_with_a_reason(tmp_path: Path, node_dir: Path) -> None:
    copy = tmp_path / "node"
    shutil.copytree(node_dir, copy)
    runtime = NodeRuntime(copy)
    spent = runtime.ledger.spent_epsilon()
    runtime.ledger.lower_cap(spent + 0.5)
    answer = runtime.participation(SMALL)  # one more round would cost up to 1.0
    assert not answer.accept
    assert answer.reason.startswith("budget")
    with pytest.raises(RefusedRound, match="budget"):
        runtime.train(SMALL, "campaign-poor", 1, initial_parameters())
    assert runtime.ledger.spent_epsilon() == spent


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(consented=st.sets(st.sampled_from(list(Task))), task=st.sampled_from(list(Task)))
def test_a_task_without_consent_is_never_trained_on(
    runtime: NodeRuntime, consented: set[Task], task: Task
) -> None:
    """Feature: retail-intelligence-platform, Property 5: Privacy Budget Enforcement: for any
    consent choices, a node never trains on (or charges) a task the retailer did not consent to.
    """
    for each in Task:
        if each in consented:
            runtime.ledger.grant_consent(each)
        else:
            runtime.ledger.withdraw_consent(each)
    try:
        if task in consented:
            return
        settings_ = RunSettings(task=task.value, batch_size=128)
        answer = runtime.participation(settings_)
        assert not answer.accept
        assert "consent" in answer.reason
        before = [p.copy() for p in runtime.model.federated_parameters()]
        charged_before = len(runtime.ledger.status().releases)
        with pytest.raises(RefusedRound, match="consent"):
            runtime.train(settings_, f"campaign-{task.value}", 7, initial_parameters())
        assert len(runtime.ledger.status().releases) == charged_before
        for a, b in zip(before, runtime.model.federated_parameters(), strict=True):
            np.testing.assert_array_equal(a, b)
        release = release_id_for(f"campaign-{task.value}", 7, task)
        assert release not in {r.release_id for r in runtime.ledger.status().releases}
    finally:
        runtime.ledger.grant_consent(Task.DEMAND_PRICING)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min-participants": 3}, "min-participants"),
        ({"update-clip": 9.0}, "update-clip"),
        ({"epsilon-per-round": 50}, "epsilon-per-round"),
        ({"rounds": "many"}, "rounds"),
    ],
)
def test_run_config_outside_the_fab_hash_is_validated(change: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        RunSettings.from_run_config({**RunSettings().to_run_config(), **change})


def test_reconstruction_threshold_survives_thirty_percent_dropping_out() -> None:
    for n in range(5, 60):
        shares = RunSettings.secagg_shares(n)
        threshold = RunSettings().reconstruction_threshold(n)
        # 30% of a node's neighbours may drop out and its secrets can still be rebuilt
        assert shares - threshold >= int(0.3 * shares)
        assert 2 <= threshold < shares <= n
    assert RunSettings().reconstruction_threshold(5) == 4  # 2 of 5 lost (40%) fails the round


def test_a_retried_round_is_joined_even_near_the_cap(tmp_path: Path, node_dir: Path) -> None:
    """The node re-sends what it already released, so a retry needs no new budget."""
    copy = tmp_path / "node"
    shutil.copytree(node_dir, copy)
    runtime = NodeRuntime(copy)
    runtime.train(SMALL, "campaign-cap", 1, initial_parameters())
    runtime.ledger.lower_cap(runtime.ledger.spent_epsilon() + 0.01)
    assert not runtime.participation(SMALL).accept  # a new round no longer fits
    retry = runtime.participation(SMALL, "campaign-cap", 1)
    assert retry.accept, retry.reason
    assert "re-sends" in retry.reason


def test_the_runner_warm_up_loads_the_runtime_its_first_task_uses(
    node_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The runner loads torch and the node's data before its first task; that task then
    finds the same runtime (one load per process, even when both race)."""
    import threading

    from shared.federation import client_app
    from shared.node_runtime.flower_runner import warm_up

    copy = shutil.copytree(node_dir, tmp_path / "node")
    first = warm_up(copy)
    racing: list[NodeRuntime] = []
    task = threading.Thread(target=lambda: racing.append(client_app.runtime_for(copy)))
    task.start()
    first.join(120)
    task.join(120)
    assert racing == [client_app.runtime_for(copy)]
    assert racing[0].node_dir == copy

    caplog.set_level("INFO", logger="shared.node_runtime.flower_runner")
    warm_up(tmp_path / "not-prepared").join(120)  # no data yet: logged, nothing raised
    assert "warm-up skipped" in caplog.text
    assert tmp_path / "not-prepared" not in client_app._RUNTIMES
