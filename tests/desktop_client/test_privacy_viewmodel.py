"""The Privacy page's view-models without Qt: consent, budget, cap, next-round cost, export,
local erasure and the coordinator requests (against the real API app)."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop_client.viewmodels.data_import import DataImportViewModel
from desktop_client.viewmodels.privacy_budget import (
    CampaignOffer,
    CapError,
    PrivacyViewModel,
    explanation,
    round_settings,
)
from desktop_client.viewmodels.privacy_coordinator import CoordinatorClient, CoordinatorProblem
from desktop_client.viewmodels.privacy_erase import (
    EraseRefused,
    erase_local_copies,
    local_copies,
)
from desktop_client.viewmodels.privacy_export import export_with_listing
from shared.enrollment import CREDENTIALS_FILE, enrollment_dir
from shared.federation.node import CANONICAL_FILE
from shared.federation.settings import RunSettings
from shared.node_runtime.events import EventKind, EventLog
from shared.node_runtime.supervisor import ProcessRecord, RuntimeState, state_path
from shared.privacy import LEDGER_FILENAME, PrivacyLedger, release_id_for
from shared.schema import Task
from shared.synthetic import generate_demo
from tests.coordinator.test_api_support import World, build_world


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    manifest = generate_demo(tmp_path_factory.mktemp("demo"), retailers=2, seed=9, scale=0.1)
    return manifest.retailers[1].path


def prepared(node: Path, export_file: Path) -> Path:
    vm = DataImportViewModel(node)
    vm.accept(vm.analyse(export_file))
    vm.use_data()
    return node


def charge(node: Path, run: int, server_round: int, task: Task = Task.DEMAND_PRICING) -> None:
    """A committed release, as the node's runtime writes one after a round."""
    with PrivacyLedger.in_data_dir(node) as ledger:
        ledger.grant_consent(task)
        release = release_id_for(run, server_round, task)
        reservation = ledger.reserve(release, task, 1.2, 0.05, 40)
        assert not hasattr(reservation, "code"), reservation
        ledger.commit(release)


def test_explanations_say_what_leaves_and_what_never_does() -> None:
    for task in Task:
        text = explanation(task)
        assert "never leave" in text and "at least 4 other shops" in text
    assert "noisy counts" in explanation(Task.BUNDLES)
    assert "model update" in explanation(Task.DEMAND_PRICING)


def test_consent_is_recorded_in_the_ledger_with_a_history(tmp_path: Path) -> None:
    vm = PrivacyViewModel(tmp_path)
    assert vm.consents() == {task: False for task in Task}
    assert not (tmp_path / LEDGER_FILENAME).exists()  # reading never creates a ledger
    vm.set_consent(Task.BUNDLES, True)
    vm.set_consent(Task.BUNDLES, True)  # no change, no new history line
    vm.set_consent(Task.DEMAND_PRICING, True)
    vm.set_consent(Task.BUNDLES, False)
    with PrivacyLedger.in_data_dir(tmp_path) as ledger:
        assert ledger.has_consent(Task.DEMAND_PRICING)
        assert not ledger.has_consent(Task.BUNDLES)
    history = vm.consent_history()
    assert [(e["task"], e["granted"]) for e in history] == [
        ("bundles", True),
        ("demand_pricing", True),
        ("bundles", False),
    ]


def test_budget_and_spending_per_round_come_from_the_ledger(tmp_path: Path) -> None:
    vm = PrivacyViewModel(tmp_path)
    assert vm.budget().spent == 0 and vm.budget().cap == 10 and vm.spending() == []
    charge(tmp_path, 7, 1)
    charge(tmp_path, 7, 2)
    spending = vm.spending()
    assert [s.label for s in spending] == ["Run 7, round 1", "Run 7, round 2"]
    assert all(s.added > 0 for s in spending)
    budget = vm.budget()
    assert sum(s.added for s in spending) == pytest.approx(budget.spent)
    assert budget.remaining == pytest.approx(budget.cap - budget.spent)
    assert 0 < budget.fraction_spent < 1


def test_the_cap_only_goes_down_and_never_below_spent(tmp_path: Path) -> None:
    charge(tmp_path, 1, 1)
    vm = PrivacyViewModel(tmp_path)
    spent = vm.budget().spent
    with pytest.raises(CapError, match="only lowers"):
        vm.lower_cap(12)
    with pytest.raises(CapError, match="already spent"):
        vm.lower_cap(spent / 2)
    assert vm.lower_cap(6.5).cap == 6.5
    with pytest.raises(CapError, match="only lowers"):
        vm.lower_cap(8)
    assert vm.budget().cap == 6.5


def test_next_round_cost(tmp_path: Path, export_file: Path) -> None:
    vm = PrivacyViewModel(tmp_path)
    unknown = vm.next_round_cost(None)
    assert not unknown.known and unknown.message == "unknown until a campaign is offered"
    offer = CampaignOffer(3, "running", rounds=5, epsilon=4.0, tasks=("demand_pricing",))
    assert vm.next_round_cost(offer).message.startswith("nothing: without consent")
    vm.set_consent(Task.DEMAND_PRICING, True)
    assert not vm.next_round_cost(offer).known  # no data prepared yet
    prepared(tmp_path, export_file)
    cost = vm.next_round_cost(offer)
    per_round = round_settings(offer).epsilon_per_round
    assert cost.known and cost.fits
    assert cost.added == pytest.approx(per_round, rel=0.01)  # calibrated to the campaign's ε
    assert "campaign #3" in cost.message
    with_bundles = CampaignOffer(4, "pending", 5, 4.0, ("demand_pricing", "bundles"))
    vm.set_consent(Task.BUNDLES, True)
    both = vm.next_round_cost(with_bundles)
    settings_b = round_settings(with_bundles)
    assert both.added > settings_b.epsilon_per_round  # the basket counts are paid too
    assert both.added <= settings_b.epsilon_per_round + settings_b.statistics_epsilon + 1e-6
    vm.lower_cap(max(vm.budget().spent, 0.05) + 0.01)
    assert not vm.next_round_cost(offer).fits


@settings(max_examples=100, deadline=None)
@given(
    rounds=st.integers(1, 60),
    epsilon=st.floats(0.05, 10.0),
    tasks=st.sets(st.sampled_from([t.value for t in Task]), min_size=1),
)
def test_the_app_prices_the_per_round_epsilon_the_coordinator_sends(
    rounds: int, epsilon: float, tasks: set[str]
) -> None:
    """Property: the ε split the app prices equals the run config the coordinator submits."""
    from coordinator.campaign_runner import run_config_for
    from coordinator.services.campaigns import CampaignRecord

    ordered = tuple(sorted(tasks))
    record = CampaignRecord(
        1, "running", rounds, epsilon, ordered, None, "admin", datetime.now(UTC), None, None, None
    )
    try:
        sent = RunSettings.from_run_config(run_config_for(record))
    except ValueError:
        return  # the coordinator refuses this campaign; nothing to price
    mine = round_settings(CampaignOffer(1, "running", rounds, epsilon, ordered))
    assert mine.epsilon_per_round == pytest.approx(sent.epsilon_per_round)
    assert mine.statistics_epsilon == pytest.approx(sent.statistics_epsilon)


def test_export_holds_everything_in_open_formats(tmp_path: Path, export_file: Path) -> None:
    node = prepared(tmp_path / "node", export_file)
    vm = PrivacyViewModel(node)
    vm.set_consent(Task.DEMAND_PRICING, True)
    charge(node, 2, 1)
    EventLog(node).append(EventKind.JOINED, run_id=2, server_round=1, message="joins")
    (node / "mappings").mkdir(exist_ok=True)
    (node / "mappings" / "abc.json").write_text('{"columns": {}}', "utf-8")
    from shared.insights.store import InsightStore

    with InsightStore.in_data_dir(node) as store:
        store.save(
            "pricing",
            [{"product_id": "100029", "recommended_price": 5.49}],
            node="node",
            model_version="m1",
            data_fingerprint="f1",
            epsilon_spent=1.0,
        )
    result = export_with_listing(node, tmp_path / "out" / "my-data.zip")
    with zipfile.ZipFile(result.path) as archive:
        names = set(archive.namelist())
        releases = list(csv.DictReader(io.StringIO(archive.read("ledger/releases.csv").decode())))
        canonical = archive.read("data/canonical.csv").decode()
        budget = json.loads(archive.read("ledger/budget.json"))
        consent = list(csv.DictReader(io.StringIO(archive.read("consent/current.csv").decode())))
        events = archive.read("events/events.jsonl").decode().splitlines()
        pricing = json.loads(archive.read("insights/pricing.json"))
    assert {
        "README.txt",
        "ledger/budget.json",
        "ledger/releases.csv",
        "consent/current.csv",
        "consent/history.jsonl",
        "data/canonical.csv",
        "data/node.json",
        "events/events.jsonl",
        "mappings/abc.json",
    } <= names
    assert [r["release_id"] for r in releases] == [release_id_for(2, 1, Task.DEMAND_PRICING)]
    assert budget["epsilon_spent"] == pytest.approx(vm.budget().spent)
    assert {r["task"]: r["granted"] for r in consent}["demand_pricing"] == "True"
    assert len(canonical.splitlines()) - 1 == vm_rows(node)
    assert json.loads(events[0])["kind"] == "joined"
    assert pricing[0]["model_version"] == "m1"
    assert "100029" in json.dumps(pricing[0])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["my-data.zip"]


def vm_rows(node: Path) -> int:
    import pandas as pd

    return len(pd.read_parquet(node / CANONICAL_FILE))


def test_erase_removes_local_copies_and_keeps_the_ledger(tmp_path: Path, export_file: Path) -> None:
    node = prepared(tmp_path / "node", export_file)
    charge(node, 1, 1)
    EventLog(node).append(EventKind.JOINED, run_id=1, server_round=1)
    (node / "model").mkdir()
    (node / "model" / "global.npz").write_bytes(b"model")
    (node / "insights.sqlite").write_bytes(b"insights")
    enrolled = enrollment_dir(node)
    enrolled.mkdir()
    (enrolled / CREDENTIALS_FILE).write_text("{}", "utf-8")
    listed = {p.name for p in local_copies(node)}
    assert {CANONICAL_FILE, "model", "insights.sqlite", "events.jsonl", "keys"} <= listed
    assert "enrollment" not in listed
    result = erase_local_copies(node)
    assert set(result.removed) == listed and result.kept_enrollment
    remaining = {p.name for p in node.iterdir()}
    assert LEDGER_FILENAME in remaining and "enrollment" in remaining
    assert not (node / CANONICAL_FILE).exists() and not (node / "model").exists()
    assert PrivacyViewModel(node).budget().spent > 0  # what left stays counted
    assert "enrollment" in erase_local_copies(node, include_enrollment=True).removed
    assert not enrolled.exists()


# -- the coordinator (real API app behind an httpx transport) ---------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(Path(tmp_path_factory.mktemp("privacy-api")))
    yield built
    built.close()


def forward_to(world: World) -> httpx.MockTransport:
    """Hands each request to the coordinator app in this process (no sockets)."""

    def handle(request: httpx.Request) -> httpx.Response:
        reply = world.client.request(
            request.method,
            request.url.raw_path.decode(),
            content=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        )
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

    return httpx.MockTransport(handle)


def enroll_node(node: Path, world: World, access: str | None = None) -> Path:
    directory = enrollment_dir(node)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CREDENTIALS_FILE
    credentials = {
        "api_url": "http://testserver",
        "access_token": access or world.tokens["retailer"],
        "refresh_token": world.refresh_tokens["retailer"],
        "retailer_id": world.retailer_a,
    }
    path.write_text(json.dumps(credentials), "utf-8")
    return path


def test_the_offered_campaign_and_a_deletion_request(tmp_path: Path, world: World) -> None:
    enroll_node(tmp_path, world)
    client = CoordinatorClient(tmp_path, transport=forward_to(world))
    offer = client.current_offer()
    assert offer is not None and offer.campaign_id == world.campaign_id
    assert offer.status == "running" and offer.rounds == 3
    receipt = client.request_deletion("from the app")
    assert receipt.retailer_id == world.retailer_a
    assert f"#{receipt.request_id}" in receipt.message
    listed = world.client.get("/api/v1/deletion-requests", headers=world.headers("admin"))
    assert receipt.request_id in [item["id"] for item in listed.json()]


def test_an_expired_token_is_refreshed_and_stored(tmp_path: Path, world: World) -> None:
    stale = "rip_a_expired-or-unknown"
    path = enroll_node(tmp_path, world, access=stale)
    client = CoordinatorClient(tmp_path, transport=forward_to(world))
    assert client.request_deletion().retailer_id == world.retailer_a
    stored = json.loads(path.read_text("utf-8"))
    assert stored["access_token"] not in (stale, "")
    assert stored["refresh_token"] != world.refresh_tokens["retailer"]  # rotated
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    world.tokens["retailer"] = stored["access_token"]  # the old pair stopped working
    world.refresh_tokens["retailer"] = stored["refresh_token"]


def test_not_enrolled_and_unreachable_are_plain_messages(tmp_path: Path) -> None:
    with pytest.raises(CoordinatorProblem, match="not enrolled"):
        CoordinatorClient(tmp_path).current_offer()
    directory = enrollment_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / CREDENTIALS_FILE).write_text(
        json.dumps({"api_url": "http://127.0.0.1:9", "access_token": "t"}), "utf-8"
    )
    with pytest.raises(CoordinatorProblem, match="cannot reach the coordinator"):
        CoordinatorClient(tmp_path, timeout=5).request_deletion()


def test_erase_is_refused_while_the_node_takes_part(tmp_path: Path, export_file: Path) -> None:
    """As when this app's own process runs the node (Training page): nothing is deleted."""
    node = prepared(tmp_path / "node", export_file)
    state = RuntimeState(owner=ProcessRecord.of(os.getpid()), superlink="127.0.0.1:9092")
    state.state = "connected"
    path = state_path(node)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(state.to_json()), "utf-8")
    with pytest.raises(EraseRefused, match="leave training first"):
        erase_local_copies(node)
    assert (node / CANONICAL_FILE).exists()
    state.state = "stopped"
    path.write_text(json.dumps(state.to_json()), "utf-8")
    assert CANONICAL_FILE in erase_local_copies(node).removed


def test_a_pair_rotated_by_the_runner_meanwhile_is_picked_up(tmp_path: Path, world: World) -> None:
    """The node's runner renews the same credential for its ledger reports; when it rotates
    the pair while the app's request is on its way, the app uses the new pair, not an error."""
    path = enroll_node(tmp_path, world, access="rip_a_stale")
    forward = forward_to(world)
    rotated: dict[str, str] = {}

    def runner_rotates_first(request: httpx.Request) -> httpx.Response:
        if not rotated:  # the runner's renewal lands just before the app's request
            stored = json.loads(path.read_text("utf-8"))
            fresh = world.client.post(
                "/api/v1/auth/refresh", json={"refresh_token": stored["refresh_token"]}
            ).json()
            rotated.update(fresh)
            path.write_text(json.dumps({**stored, **fresh}), "utf-8")
        return forward.handle_request(request)

    client = CoordinatorClient(tmp_path, transport=httpx.MockTransport(runner_rotates_first))
    assert client.current_offer() is not None
    assert json.loads(path.read_text("utf-8"))["access_token"] == rotated["access_token"]
    world.tokens["retailer"] = rotated["access_token"]
    world.refresh_tokens["retailer"] = rotated["refresh_token"]
