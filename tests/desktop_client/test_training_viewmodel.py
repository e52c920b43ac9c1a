"""The Training page's view-model, driven by a real node directory.

The event stream and ``run/node.json`` are written with the runtime's own writers (see
``training_stream``); joining, leaving and the status read run the real ``retail-node``.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from desktop_client.viewmodels.training import (
    CONNECT_PAGE,
    JOIN_LOG,
    EventFollower,
    TrainingViewModel,
    decline_cause,
    describe_event,
    node_summary,
)
from shared.node_runtime.events import Event, EventKind, EventLog
from tests.desktop_client.training_stream import (
    write_connection,
    write_decline,
    write_round,
    write_running_state,
)
from tests.process_helpers import wait_for

CHILD_SECONDS = 180  # a `retail-node` child imports the runtime (torch) on a busy machine


def test_rounds_give_losses_budget_round_and_a_readable_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    write_connection(log, "connected", "connected to the coordinator at 127.0.0.1:9092 (node id 7)")
    write_round(log, 4, 1, loss=0.9, spent=0.5)
    write_round(log, 4, 2, loss=0.7, spent=1.0)
    write_round(log, 4, 3, loss=0.6, spent=1.5)
    model = TrainingViewModel(tmp_path)
    model.poll()
    snap = model.snapshot()
    assert [(p.run_id, p.round, p.loss) for p in snap.losses] == [
        (4, 1, 0.9),
        (4, 2, 0.7),
        (4, 3, 0.6),
    ]
    assert (snap.current_run, snap.current_round) == (4, 3)
    assert (snap.epsilon_spent, snap.epsilon_cap) == (1.5, 10.0)
    texts = [entry.text for entry in snap.log]
    assert texts[0] == "Connected to the coordinator at 127.0.0.1:9092 (node id 7)."
    assert (
        "Campaign 4, round 3: new shared model received; its loss on your held-out " in (texts[-1])
    )
    assert "Campaign 4, round 2: privacy budget charged; spent ε 1.000 of 10.00." in texts
    assert not snap.declines


def test_declines_keep_their_reason_and_cause(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    write_decline(log, 5, 1, "no consent for demand & pricing")
    write_decline(log, 6, 2, "budget: this round would bring ε to 10.40, above the cap of 10.00")
    write_decline(log, 7, 1, "not enough data: 12 product-days, 50 needed")
    model = TrainingViewModel(tmp_path)
    model.poll()
    declines = model.snapshot().declines
    assert [(d.run_id, d.round, d.cause) for d in declines] == [
        (5, 1, "consent"),
        (6, 2, "budget"),
        (7, 1, "other"),
    ]
    assert declines[0].reason == "no consent for demand & pricing"
    entries = [e for e in model.snapshot().log if e.level == "warning"]
    assert (
        entries[0].text
        == "Campaign 5, round 1: you do not take part: no consent for demand & pricing."
    )


def test_decline_causes() -> None:
    assert decline_cause("no consent for bundles") == "consent"
    assert decline_cause("budget: ε would exceed the cap") == "budget"
    assert decline_cause("app version 0.2 is not this node's 0.1") == "other"


def test_unknown_kinds_are_ignored_and_errors_say_what_went_wrong() -> None:
    at = datetime.now(UTC)
    assert describe_event(Event(kind="some_future_kind", at=at)) is None
    error = describe_event(
        Event(kind=EventKind.ERROR, at=at, run_id=3, message="could not send the reply")
    )
    assert error is not None and error.level == "error"
    assert error.text == "Campaign 3: something went wrong: could not send the reply"


def test_poll_reads_only_new_events_and_says_whether_anything_changed(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    write_round(log, 1, 1, loss=1.0, spent=0.5)
    model = TrainingViewModel(tmp_path)
    assert model.poll() is True
    offset = model.events.offset
    assert offset == (tmp_path / "events.jsonl").stat().st_size
    model.shutdown()  # the status read the ε event asked for is not needed here
    assert model.poll() is False
    write_round(log, 1, 2, loss=0.8, spent=1.0)
    assert model.poll() is True
    assert [p.round for p in model.snapshot().losses] == [1, 2]
    model.shutdown()


@settings(max_examples=100, deadline=None)
@given(
    losses=st.lists(st.floats(0.01, 5.0, allow_nan=False), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 8), max_size=6),
)
def test_following_by_offset_sees_every_event_once(losses: list[float], cuts: list[int]) -> None:
    """Design property (events.py: readers follow the stream by byte offset while the runner
    writes): however the appends and the polls interleave, the follower ends with exactly the
    state of one read of the whole stream, no event lost or repeated."""
    with tempfile.TemporaryDirectory() as folder:
        node_dir = Path(folder)
        log = EventLog(node_dir)
        follower = EventFollower(node_dir)
        polls = set(cuts)
        for index, loss in enumerate(losses):
            write_round(log, 1, index + 1, loss=loss, spent=0.5 * (index + 1))
            if index in polls:
                follower.read()
        follower.read()
        whole = EventFollower(node_dir)
        whole.read()
        assert follower.loss_points() == whole.loss_points()
        assert list(follower.log) == list(whole.log)
        assert len(follower.log) == 5 * len(losses)
        assert (follower.epsilon_spent, follower.current_round) == (
            whole.epsilon_spent,
            len(losses),
        )


def test_connection_state_comes_from_the_runtime_state_file(tmp_path: Path) -> None:
    model = TrainingViewModel(tmp_path)
    model.poll()
    assert model.snapshot().connection == "Not taking part"
    assert model.snapshot().running is False
    write_running_state(tmp_path, "unreachable", "coordinator unreachable, retrying in 4 s")
    model.poll()
    snap = model.snapshot()
    assert snap.running is True
    assert snap.connection == (
        "Coordinator unreachable; retrying (coordinator unreachable, retrying in 4 s)"
    )
    assert snap.can_leave is True and snap.can_join is False


def test_joining_an_unenrolled_node_says_to_enroll_first(tmp_path: Path) -> None:
    model = TrainingViewModel(tmp_path)
    model.join()
    snap = model.snapshot()
    assert snap.notice == (
        "This computer is not connected to a coordinator yet. Enroll on the Connect page first."
    )
    assert snap.busy == "" and snap.can_join is False
    assert snap.guidance_page == CONNECT_PAGE
    assert "Open the Connect page and enroll" in snap.guidance
    assert not (tmp_path / JOIN_LOG).exists()  # nothing was started
    assert node_summary(tmp_path) == "Not enrolled: open the Connect page to join a coordinator"


def test_status_read_gives_the_ledgers_figures_and_whether_data_is_prepared(
    tmp_path: Path,
) -> None:
    from shared.privacy.ledger import PrivacyLedger

    with PrivacyLedger.in_data_dir(tmp_path) as ledger:
        ledger.lower_cap(4.0)
    model = TrainingViewModel(tmp_path)
    assert model.snapshot().prepared is None  # not known before the status read answers
    model.request_status()
    answered = lambda: _settled(model) and model.snapshot().prepared is not None  # noqa: E731
    assert wait_for(answered, CHILD_SECONDS)
    snap = model.snapshot()
    assert snap.prepared is False
    assert (snap.epsilon_spent, snap.epsilon_cap) == (0.0, 4.0)


def test_leave_with_nothing_running_ends_quietly(tmp_path: Path) -> None:
    model = TrainingViewModel(tmp_path)
    model.leave()
    assert model.snapshot().busy == "leaving"
    assert model.snapshot().can_leave is False
    assert wait_for(lambda: _settled(model), CHILD_SECONDS)
    assert model.snapshot().notice == ""
    model.shutdown()


def _settled(model: TrainingViewModel) -> bool:
    """Poll once; True when no Join/Leave is under way."""
    model.poll()
    return model.snapshot().busy == ""
