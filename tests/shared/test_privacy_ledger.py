"""The node-side privacy ledger: consent and the cap are checked and the charge written before
anything may leave, a release id is charged once, and crashes never under-count."""

from __future__ import annotations

import itertools
import re
import shutil
import sqlite3
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from shared.privacy import (
    LEDGER_FILENAME,
    Decline,
    DeclineCode,
    LedgerError,
    Mechanism,
    PrivacyLedger,
    ReleaseKind,
    ReleaseState,
    Reservation,
    epsilon,
    release_id_for,
)
from shared.schema import Task

DELTA = 1e-5
MODERATE = (1.0, 0.05, 400)  # ε about 7.4 alone; two of them exceed 10
SMALL = (2.0, 0.02, 20)  # ε about 0.3 alone


class FakeClock:
    """A clock that ticks one second per reading, so timestamps are distinct and predictable."""

    def __init__(self) -> None:
        self.moment = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(tmp_path: Path, clock: FakeClock) -> PrivacyLedger:
    opened = PrivacyLedger(tmp_path / LEDGER_FILENAME, clock=clock)
    for task in Task:
        opened.grant_consent(task)
    return opened


def rows(path: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM releases ORDER BY seq").fetchall()


def reserved(outcome: Reservation | Decline) -> Reservation:
    assert isinstance(outcome, Reservation), outcome
    return outcome


def declined(outcome: Reservation | Decline, code: DeclineCode) -> Decline:
    assert isinstance(outcome, Decline), outcome
    assert outcome.code is code, outcome
    return outcome


# -- opening and settings --------------------------------------------------------------------


def test_new_ledger_is_one_wal_file_with_the_design_defaults(tmp_path: Path) -> None:
    path = tmp_path / "node" / LEDGER_FILENAME
    with PrivacyLedger(path) as ledger:
        assert ledger.cap_epsilon == 10.0
        assert ledger.delta == DELTA
        client_id = ledger.client_id
        assert client_id
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with PrivacyLedger(path) as reopened:
        assert reopened.client_id == client_id


def test_client_id_and_delta_are_fixed_once_created(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILENAME
    PrivacyLedger(path, client_id="shop-1").close()
    with pytest.raises(LedgerError, match="belongs to client"):
        PrivacyLedger(path, client_id="shop-2")
    with pytest.raises(LedgerError, match="delta"):
        PrivacyLedger(path, delta=1e-6)


def test_in_data_dir_uses_the_standard_file_name(tmp_path: Path) -> None:
    with PrivacyLedger.in_data_dir(tmp_path) as ledger:
        assert ledger.path == tmp_path / LEDGER_FILENAME
    assert (tmp_path / LEDGER_FILENAME).exists()


def test_cap_above_the_default_needs_an_explicit_flag(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="above the default"):
        PrivacyLedger(tmp_path / "a.sqlite3", cap_epsilon=12.0)
    with PrivacyLedger(
        tmp_path / "b.sqlite3", cap_epsilon=12.0, allow_cap_above_default=True
    ) as ledger:
        assert ledger.cap_epsilon == 12.0
    with PrivacyLedger(tmp_path / "c.sqlite3") as ledger:
        with pytest.raises(LedgerError, match="above the default"):
            ledger.set_cap(11.0)
        ledger.set_cap(11.0, allow_above_default=True)
        assert ledger.cap_epsilon == 11.0


def test_lower_cap_only_lowers_and_never_below_what_is_spent(ledger: PrivacyLedger) -> None:
    reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    spent = ledger.spent_epsilon()
    ledger.lower_cap(8.0)
    assert ledger.cap_epsilon == 8.0
    with pytest.raises(LedgerError, match="lower_cap only lowers"):
        ledger.lower_cap(9.0)
    with pytest.raises(LedgerError, match="already spent"):
        ledger.lower_cap(spent - 0.01)
    with pytest.raises(LedgerError, match="positive"):
        ledger.lower_cap(0.0)
    ledger.lower_cap(spent)
    assert ledger.status().remaining_epsilon == 0.0
    ledger.set_cap(10.0)  # back up to the default is the retailer's own choice
    assert ledger.cap_epsilon == 10.0


def test_reopening_with_a_lower_cap_lowers_it_and_a_higher_one_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILENAME
    PrivacyLedger(path, cap_epsilon=5.0).close()
    with PrivacyLedger(path) as ledger:
        assert ledger.cap_epsilon == 5.0
    with PrivacyLedger(path, cap_epsilon=3.0) as ledger:
        assert ledger.cap_epsilon == 3.0


# -- consent -------------------------------------------------------------------------------


def test_consent_is_opt_in_and_timestamped(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / LEDGER_FILENAME
    with PrivacyLedger(path, clock=clock) as ledger:
        assert ledger.consents() == dict.fromkeys(Task, False)
        ledger.grant_consent(Task.BUNDLES)
        assert ledger.has_consent(Task.BUNDLES)
        assert not ledger.has_consent(Task.FORECASTING)
        ledger.withdraw_consent(Task.BUNDLES)
        assert not ledger.has_consent(Task.BUNDLES)
    with sqlite3.connect(path) as db:
        granted_at, withdrawn_at = db.execute(
            "SELECT granted_at, withdrawn_at FROM consent WHERE task = 'bundles'"
        ).fetchone()
    assert granted_at < withdrawn_at


def test_reserving_without_consent_is_declined_in_words_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / LEDGER_FILENAME
    with PrivacyLedger(path) as ledger:
        ledger.grant_consent(Task.FORECASTING)
        decline = declined(ledger.reserve_count("c1", Task.BUNDLES, 3.0), DeclineCode.NO_CONSENT)
        assert decline.reason.startswith("no consent for bundles")
        assert ledger.spent_epsilon() == 0.0
    assert rows(path) == []


def test_withdrawing_consent_keeps_charges_and_declines_retries(ledger: PrivacyLedger) -> None:
    reserved(ledger.reserve("r1", Task.DEMAND_PRICING, *SMALL))
    spent = ledger.spent_epsilon()
    ledger.withdraw_consent(Task.DEMAND_PRICING)
    declined(ledger.reserve("r1", Task.DEMAND_PRICING, *SMALL), DeclineCode.NO_CONSENT)
    assert ledger.spent_epsilon() == spent
    assert ledger.recover() == ("r1",)


# -- quote and reserve ---------------------------------------------------------------------


def test_quote_prices_a_release_without_writing(ledger: PrivacyLedger) -> None:
    quote = ledger.quote(Task.FORECASTING, *MODERATE)
    assert quote.epsilon_before == 0.0
    assert quote.epsilon_after == pytest.approx(epsilon([Mechanism(*MODERATE)]))
    assert quote.fits
    assert quote.has_consent
    assert quote.remaining_epsilon == pytest.approx(10.0 - quote.epsilon_after)
    assert quote.epsilon_cost == quote.epsilon_after
    assert rows(ledger.path) == []
    reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    second = ledger.quote(Task.FORECASTING, *MODERATE)
    assert not second.fits
    assert second.remaining_epsilon == 0.0
    assert second.epsilon_cost < quote.epsilon_after  # RDP composition is sub-additive here
    with pytest.raises(LedgerError, match="noise multiplier"):
        ledger.quote(Task.FORECASTING, 0.0, 0.1, 1)


def test_calibrated_round_is_accepted_and_the_cap_is_respected(ledger: PrivacyLedger) -> None:
    """Feature: retail-intelligence-platform, Property 8: Configurable Privacy Parameters"""
    reserved(ledger.reserve("r0", Task.FORECASTING, *SMALL))
    before = ledger.spent_epsilon()
    noise = ledger.calibrate(2.0, 1.0, 1)
    reservation = reserved(ledger.reserve_count("c1", Task.BUNDLES, noise))
    assert before < reservation.epsilon_after <= before + 2.0
    with pytest.raises(LedgerError, match="exceed the cap"):
        ledger.calibrate(10.0, 0.05, 10)


def test_reserve_writes_a_pending_charge_before_anything_is_sent(ledger: PrivacyLedger) -> None:
    release_id = release_id_for("abc", 3, Task.DEMAND_PRICING)
    assert release_id == "run:abc/round:3/task:demand_pricing"
    reservation = reserved(ledger.reserve(release_id, Task.DEMAND_PRICING, *MODERATE))
    assert reservation.fresh
    assert reservation.state is ReleaseState.PENDING
    assert reservation.kind is ReleaseKind.TRAIN
    (row,) = rows(ledger.path)
    assert row["release_id"] == release_id
    assert row["state"] == "pending"
    assert row["epsilon_after"] == pytest.approx(reservation.epsilon_after)
    assert ledger.spent_epsilon() == pytest.approx(reservation.epsilon_after)


def test_count_releases_are_plain_gaussians(ledger: PrivacyLedger) -> None:
    reservation = reserved(ledger.reserve_count("count-1", Task.BUNDLES, 4.0))
    assert reservation.kind is ReleaseKind.COUNT
    assert (reservation.sample_rate, reservation.steps) == (1.0, 1)
    assert reservation.epsilon_after == pytest.approx(epsilon([Mechanism.gaussian(4.0)]))


def test_a_retried_round_is_charged_once(ledger: PrivacyLedger) -> None:
    first = reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    spent = ledger.spent_epsilon()
    again = reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    assert not again.fresh
    assert again.epsilon_after == first.epsilon_after
    assert ledger.spent_epsilon() == spent
    ledger.commit("r1")
    replay = reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    assert replay.state is ReleaseState.COMMITTED
    assert not replay.fresh
    assert ledger.spent_epsilon() == spent
    assert len(rows(ledger.path)) == 1


def test_same_id_with_other_parameters_is_a_conflict(ledger: PrivacyLedger) -> None:
    reserved(ledger.reserve("r1", Task.FORECASTING, *SMALL))
    decline = declined(ledger.reserve("r1", Task.FORECASTING, 1.5, 0.02, 20), DeclineCode.CONFLICT)
    assert "charged once" in decline.reason
    declined(ledger.reserve("r1", Task.DEMAND_PRICING, *SMALL), DeclineCode.CONFLICT)


def test_over_budget_is_declined_with_the_numbers(ledger: PrivacyLedger) -> None:
    reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    decline = declined(ledger.reserve("r2", Task.FORECASTING, *MODERATE), DeclineCode.BUDGET)
    match = re.fullmatch(
        r"budget: this round would bring ε to ([\d.]+), above your cap of ([\d.]+)",
        decline.reason,
    )
    assert match, decline.reason
    assert float(match[1]) > float(match[2]) == 10.0
    count = declined(ledger.reserve_count("c", Task.BUNDLES, 0.3), DeclineCode.BUDGET)
    assert count.reason.startswith("budget: this count release would bring ε to ")
    assert len(rows(ledger.path)) == 1


def test_an_overshoot_too_small_for_one_decimal_still_reads_as_above(
    ledger: PrivacyLedger,
) -> None:
    quote = ledger.quote(Task.FORECASTING, *MODERATE)
    ledger.lower_cap(quote.epsilon_after - 1e-4)
    decline = declined(ledger.reserve("r", Task.FORECASTING, *MODERATE), DeclineCode.BUDGET)
    shown, cap = re.findall(r"[\d.]+\d", decline.reason)
    assert float(shown) > float(cap)


def test_pending_releases_count_against_the_budget(ledger: PrivacyLedger) -> None:
    reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))  # not committed yet
    declined(ledger.reserve("r2", Task.DEMAND_PRICING, *MODERATE), DeclineCode.BUDGET)


@pytest.mark.parametrize(
    ("release_id", "task", "params", "needle"),
    [
        ("", Task.FORECASTING, SMALL, "non-empty id"),
        ("x" * 600, Task.FORECASTING, SMALL, "at most"),
        ("r", "weather", SMALL, "unknown task"),
        ("r", Task.FORECASTING, (0.0, 0.1, 1), "noise multiplier"),
        ("r", Task.FORECASTING, (1.0, 0.0, 1), "sample rate"),
        ("r", Task.FORECASTING, (1.0, 0.1, 0), "steps"),
    ],
)
def test_invalid_requests_are_declined_not_crashed(
    ledger: PrivacyLedger,
    release_id: str,
    task: Task,
    params: tuple[float, float, int],
    needle: str,
) -> None:
    decline = declined(ledger.reserve(release_id, task, *params), DeclineCode.INVALID)
    assert needle in decline.reason
    assert rows(ledger.path) == []


def test_task_given_as_its_text_value_is_accepted(ledger: PrivacyLedger) -> None:
    reservation = reserved(ledger.reserve("r", "forecasting", *SMALL))
    assert reservation.task is Task.FORECASTING


# -- commit and abort ----------------------------------------------------------------------


def test_commit_is_final(ledger: PrivacyLedger) -> None:
    reserved(ledger.reserve("r1", Task.FORECASTING, *SMALL))
    ledger.commit("r1")
    ledger.commit("r1")  # idempotent
    with pytest.raises(LedgerError, match="final"):
        ledger.abort("r1")
    with pytest.raises(LedgerError, match="no release"):
        ledger.commit("nope")
    with sqlite3.connect(ledger.path) as db, pytest.raises(sqlite3.DatabaseError, match="final"):
        db.execute("UPDATE releases SET state = 'aborted' WHERE release_id = 'r1'")
    with sqlite3.connect(ledger.path) as db, pytest.raises(sqlite3.DatabaseError, match="never"):
        db.execute("DELETE FROM releases")


def test_abort_refunds_a_release_that_never_left(ledger: PrivacyLedger) -> None:
    reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    ledger.abort("r1")
    ledger.abort("r1")  # idempotent
    assert ledger.spent_epsilon() == 0.0
    with pytest.raises(LedgerError, match="aborted"):
        ledger.commit("r1")
    with pytest.raises(LedgerError, match="no release"):
        ledger.abort("nope")
    again = reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    assert again.fresh
    assert ledger.spent_epsilon() == pytest.approx(epsilon([Mechanism(*MODERATE)]))
    assert len(rows(ledger.path)) == 1


def test_a_crash_between_charge_and_send_stays_charged(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILENAME
    ledger = PrivacyLedger(path)
    ledger.grant_consent(Task.FORECASTING)
    reserved(ledger.reserve("r1", Task.FORECASTING, *MODERATE))
    charged = ledger.spent_epsilon()
    del ledger  # the process dies without commit or close
    with PrivacyLedger(path) as reopened:
        assert reopened.recovered_pending == ("r1",)
        assert reopened.spent_epsilon() == charged
        declined(reopened.reserve("r2", Task.FORECASTING, *MODERATE), DeclineCode.BUDGET)


def test_concurrent_reservers_never_overspend(tmp_path: Path) -> None:
    """Separate connections (as in the app and the ClientApp process) race for the budget."""
    path = tmp_path / LEDGER_FILENAME
    with PrivacyLedger(path) as setup:
        setup.grant_consent(Task.FORECASTING)
    outcomes: list[Reservation | Decline] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        with PrivacyLedger(path) as mine:
            outcome = mine.reserve(f"r{index}", Task.FORECASTING, *MODERATE)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(o, Reservation) for o in outcomes) == 1
    with PrivacyLedger(path) as ledger:
        assert ledger.spent_epsilon() <= ledger.cap_epsilon


# -- status --------------------------------------------------------------------------------


def test_status_matches_the_design_and_carries_per_release_history(
    ledger: PrivacyLedger, clock: FakeClock
) -> None:
    empty = ledger.status()
    assert (empty.total_epsilon, empty.spent_epsilon, empty.remaining_epsilon) == (10.0, 0.0, 10.0)
    assert empty.delta == DELTA
    assert empty.releases == ()
    for round_number in range(1, 4):
        release_id = release_id_for("run", round_number, Task.FORECASTING)
        reserved(ledger.reserve(release_id, Task.FORECASTING, *SMALL))
        ledger.commit(release_id)
    reserved(ledger.reserve("aborted", Task.FORECASTING, *SMALL))
    ledger.abort("aborted")
    reserved(ledger.reserve_count("pending-count", Task.BUNDLES, 5.0))
    status = ledger.status()
    assert status.client_id == ledger.client_id
    assert status.last_updated == clock.moment
    assert status.last_updated.tzinfo is not None
    history = [Mechanism(*SMALL)] * 3 + [Mechanism.gaussian(5.0)]
    assert status.spent_epsilon == pytest.approx(epsilon(history))
    assert status.remaining_epsilon == pytest.approx(10.0 - status.spent_epsilon)
    assert [r.state for r in status.releases] == [ReleaseState.COMMITTED] * 3 + [
        ReleaseState.ABORTED,
        ReleaseState.PENDING,
    ]
    assert status.pending_release_ids == ("pending-count",)
    cumulative = [r.cumulative_epsilon for r in status.releases]
    assert cumulative[3] is None
    chart = [c for c in cumulative if c is not None]
    assert chart == sorted(chart)
    assert chart[-1] == pytest.approx(status.spent_epsilon)
    assert status.releases[0].epsilon_after == pytest.approx(epsilon([Mechanism(*SMALL)]))


# -- properties ----------------------------------------------------------------------------

NOISES = (1.0, 2.0, 4.0)
RATES = (0.01, 0.05, 1.0)
STEPS = (1, 10, 100)  # alone, these releases cost ε from 0.1 to 96
MECHANISMS = st.tuples(st.sampled_from(NOISES), st.sampled_from(RATES), st.sampled_from(STEPS))


@settings(max_examples=100, deadline=None)
@given(
    task=st.sampled_from(list(Task)),
    others=st.sets(st.sampled_from(list(Task))),
    withdrawn=st.booleans(),
    params=MECHANISMS,
    cap=st.sampled_from([0.5, 5.0, 10.0]),
)
def test_a_task_without_consent_is_never_reserved(
    task: Task,
    others: set[Task],
    withdrawn: bool,
    params: tuple[float, float, int],
    cap: float,
) -> None:
    """Feature: retail-intelligence-platform, Property 5: Privacy Budget Enforcement

    Whatever else the retailer agreed to, a release for a task it has not (or no longer) consented
    to is declined and nothing is charged.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / LEDGER_FILENAME
        with PrivacyLedger(path, cap_epsilon=cap) as ledger:
            for other in others - {task}:
                ledger.grant_consent(other)
            if withdrawn:
                ledger.grant_consent(task)
                ledger.withdraw_consent(task)
            outcome = ledger.reserve("run:x/round:1", task, *params)
            declined(outcome, DeclineCode.NO_CONSENT)
            assert ledger.spent_epsilon() == 0.0
        assert rows(path) == []


class LedgerMachine(RuleBasedStateMachine):
    """Feature: retail-intelligence-platform, Property 5: Privacy Budget Enforcement

    Random interleavings of reserve (new and retried ids), commit, abort, crash-and-reopen, consent
    changes and cap lowering never let the composed ε of committed and pending releases exceed
    the cap, and never charge a release id twice.
    """

    release_ids = Bundle("release_ids")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="ledger-machine-"))
        self.path = self.folder / LEDGER_FILENAME
        self.ledger: PrivacyLedger | None = None
        self.cap = 10.0
        self.consent: set[Task] = set()
        self.model: dict[str, tuple[Task, tuple[float, float, int], ReleaseState]] = {}
        self.counter = itertools.count()

    @initialize(
        cap=st.sampled_from([2.0, 5.0, 10.0]),
        consented=st.one_of(st.just(set(Task)), st.sets(st.sampled_from(list(Task)))),
    )
    def open_ledger(self, cap: float, consented: set[Task]) -> None:
        self.cap = cap
        self.ledger = PrivacyLedger(self.path, cap_epsilon=cap)
        for task in consented:
            self.ledger.grant_consent(task)
        self.consent = set(consented)

    @property
    def live(self) -> PrivacyLedger:
        assert self.ledger is not None
        return self.ledger

    def charged(self) -> list[Mechanism]:
        return [
            Mechanism(*params)
            for _, params, state in self.model.values()
            if state is not ReleaseState.ABORTED
        ]

    def expect_fresh_charge(
        self, release_id: str, task: Task, params: tuple[float, float, int]
    ) -> None:
        before = [
            Mechanism(*p)
            for rid, (_, p, s) in self.model.items()
            if s is not ReleaseState.ABORTED and rid != release_id
        ]
        after = epsilon([*before, Mechanism(*params)])
        outcome = self.live.reserve(release_id, task, *params)
        if task not in self.consent:
            declined(outcome, DeclineCode.NO_CONSENT)
            event("declined: no consent")
        elif after > self.cap:
            declined(outcome, DeclineCode.BUDGET)
            event("declined: budget")
        else:
            assert reserved(outcome).fresh
            event("charged" if release_id not in self.model else "charged again after abort")
            self.model[release_id] = (task, params, ReleaseState.PENDING)

    @rule(target=release_ids, task=st.sampled_from(list(Task)), params=MECHANISMS)
    def reserve_new(self, task: Task, params: tuple[float, float, int]) -> str:
        release_id = release_id_for("machine", next(self.counter), task)
        self.expect_fresh_charge(release_id, task, params)
        return release_id

    @rule(release_id=release_ids)
    def retry(self, release_id: str) -> None:
        if release_id not in self.model:
            return
        task, params, state = self.model[release_id]
        if state is ReleaseState.ABORTED:
            self.expect_fresh_charge(release_id, task, params)
            return
        spent = self.live.spent_epsilon()
        outcome = self.live.reserve(release_id, task, *params)
        if task not in self.consent:
            declined(outcome, DeclineCode.NO_CONSENT)
        else:
            reservation = reserved(outcome)
            assert not reservation.fresh
            assert reservation.state is state
        assert self.live.spent_epsilon() == spent

    @rule(release_id=release_ids, params=MECHANISMS)
    def retry_with_other_parameters(
        self, release_id: str, params: tuple[float, float, int]
    ) -> None:
        if release_id not in self.model:
            return
        task, original, state = self.model[release_id]
        if params == original or state is ReleaseState.ABORTED or task not in self.consent:
            return
        spent = self.live.spent_epsilon()
        declined(self.live.reserve(release_id, task, *params), DeclineCode.CONFLICT)
        assert self.live.spent_epsilon() == spent

    @rule(release_id=release_ids)
    def commit(self, release_id: str) -> None:
        if release_id not in self.model:
            with pytest.raises(LedgerError):
                self.live.commit(release_id)
            return
        task, params, state = self.model[release_id]
        if state is ReleaseState.ABORTED:
            with pytest.raises(LedgerError):
                self.live.commit(release_id)
        else:
            self.live.commit(release_id)
            self.model[release_id] = (task, params, ReleaseState.COMMITTED)

    @rule(release_id=release_ids)
    def abort(self, release_id: str) -> None:
        if release_id not in self.model:
            with pytest.raises(LedgerError):
                self.live.abort(release_id)
            return
        task, params, state = self.model[release_id]
        if state is ReleaseState.COMMITTED:
            with pytest.raises(LedgerError):
                self.live.abort(release_id)
        else:
            self.live.abort(release_id)
            self.model[release_id] = (task, params, ReleaseState.ABORTED)

    @rule()
    def crash_and_reopen(self) -> None:
        self.ledger = None  # dropped without close(), as a crashed process would
        self.ledger = PrivacyLedger(self.path, cap_epsilon=10.0)
        pending = {
            rid for rid, (_, _, state) in self.model.items() if state is ReleaseState.PENDING
        }
        assert set(self.ledger.recovered_pending) == pending

    @rule(task=st.sampled_from(list(Task)))
    def grant(self, task: Task) -> None:
        self.live.grant_consent(task)
        self.consent.add(task)

    @rule(task=st.sampled_from(list(Task)))
    def withdraw(self, task: Task) -> None:
        self.live.withdraw_consent(task)
        self.consent.discard(task)

    @precondition(lambda self: self.ledger is not None)
    @rule(fraction=st.floats(min_value=-0.5, max_value=1.0))
    def lower_cap(self, fraction: float) -> None:
        spent = epsilon(self.charged())
        new_cap = spent + fraction * (self.cap - spent)
        if new_cap <= 0 or new_cap < spent:
            with pytest.raises(LedgerError):
                self.live.lower_cap(new_cap)
            return
        self.live.lower_cap(new_cap)
        self.cap = new_cap

    @invariant()
    def composed_epsilon_never_exceeds_the_cap(self) -> None:
        if self.ledger is None:
            return
        spent = self.live.spent_epsilon()
        assert spent == pytest.approx(epsilon(self.charged()), rel=1e-12, abs=1e-12)
        assert spent <= self.cap
        assert self.live.cap_epsilon == pytest.approx(self.cap, rel=1e-12)

    @invariant()
    def every_release_id_is_charged_once(self) -> None:
        if self.ledger is None:
            return
        stored = rows(self.path)
        assert len(stored) == len({row["release_id"] for row in stored}) == len(self.model)
        for row in stored:
            _, params, state = self.model[row["release_id"]]
            assert row["state"] == state.value
            assert (row["noise_multiplier"], row["sample_rate"], row["steps"]) == params

    def teardown(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
        shutil.rmtree(self.folder, ignore_errors=True)


LedgerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=20, deadline=None)
test_ledger_state_machine = LedgerMachine.TestCase
