"""A round SecAgg+ cannot finish is failed visibly and retried without charging anyone twice."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ray.cloudpickle
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Context, Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Stage

from shared.federation.client_app import client_fn
from shared.federation.node import prepare_node
from shared.federation.settings import RunSettings
from shared.federation.simulation import run_federation
from shared.ingest import ImportOptions, import_file
from shared.privacy import PrivacyLedger
from shared.schema import Task
from shared.synthetic import generate_demo

MARKERS_ENV = "RETAIL_TEST_DROPOUT_MARKERS"
FAILING_PARTITIONS = (0, 1)  # 2 of 5 = 40% > the 30% SecAgg+ is set up to survive

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ray actors cannot import tests


def drop_out_once_while_unmasking(msg: Message, ctxt: Context, call_next):  # type: ignore[no-untyped-def]
    """Fail this node's first unmask reply, as if it had dropped out after sending its update."""
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    partition = int(ctxt.node_config.get("partition-id", -1))
    marker = Path(os.environ[MARKERS_ENV]) / f"dropped-{partition}"
    is_unmask = configs is not None and configs.get("stage") == Stage.UNMASK
    if is_unmask and partition in FAILING_PARTITIONS and not marker.exists():
        marker.touch()
        raise RuntimeError("simulated dropout while unmasking")
    return call_next(msg, ctxt)


def test_failed_secagg_round_is_retried_and_charged_once(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    manifest = generate_demo(tmp_path / "data", retailers=5, seed=8, scale=0.3)
    node_dirs = []
    for entry in manifest.retailers:
        frame = import_file(entry.path, options=ImportOptions()).frame
        assert frame is not None
        node_dirs.append(
            prepare_node(
                tmp_path / "nodes" / entry.retailer_id,
                frame,
                entry.retailer_id,
                (Task.DEMAND_PRICING,),
            )
        )
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(MARKERS_ENV, str(markers))
    app = ClientApp(client_fn=client_fn, mods=[drop_out_once_while_unmasking, secaggplus_mod])
    settings = RunSettings(rounds=1, epsilon_per_round=1.0, secagg_timeout=30.0, max_retries=1)

    records, _ = run_federation(node_dirs, settings, client_app=app)
    statistics = [r for r in records if r.stage == "statistics"]
    records = [r for r in records if r.stage == "train"]

    # no node consented to bundles: the statistics round is skipped, nobody is charged for it
    assert [(r.status, len(r.accepted)) for r in statistics] == [("skipped", 0)]
    assert all(reason.startswith("no consent") for reason in statistics[0].declined.values())
    assert sorted(p.name for p in markers.iterdir()) == ["dropped-0", "dropped-1"]
    assert [(r.round, r.attempt, r.status) for r in records] == [
        (1, 1, "failed"),
        (1, 2, "aggregated"),
    ]
    assert records[-1].participants == 5
    for node_dir in node_dirs:
        budget = PrivacyLedger.in_data_dir(node_dir).status()
        assert len(budget.releases) == 1  # one charge for round 1, though it was sent twice
        assert budget.releases[0].state.value == "committed"
        assert budget.spent_epsilon <= 1.0 + 1e-6
