"""The node-side privacy ledger: the authority on one retailer's differential-privacy budget.

Whatever a coordinator asks for, nothing leaves the node unless this ledger has first, in one
SQLite transaction, checked the retailer's consent for the task and that the composed ε of every
release that may have left (committed *and* pending) plus this one stays within the cap, and
written the charge (write-ahead). A crash after the charge and before the send therefore
over-counts, never under-counts: pending rows stay charged on reopen (`recover`) until someone
who can prove the release never left aborts it.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType

import numpy as np

from shared.privacy import accounting, store
from shared.privacy.models import (
    Decline,
    DeclineCode,
    PrivacyBudget,
    Quote,
    ReleaseKind,
    ReleaseRecord,
    ReleaseState,
    Reservation,
)
from shared.schema import Task

LEDGER_FILENAME = "privacy-ledger.sqlite3"
MAX_RELEASE_ID_LENGTH = 512


_GRANT = (
    "INSERT INTO consent (task, granted, granted_at, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT(task) DO UPDATE SET granted = excluded.granted,"
    " granted_at = excluded.granted_at, updated_at = excluded.updated_at"
)
_WITHDRAW = (
    "INSERT INTO consent (task, granted, withdrawn_at, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT(task) DO UPDATE SET granted = excluded.granted,"
    " withdrawn_at = excluded.withdrawn_at, updated_at = excluded.updated_at"
)


class LedgerError(ValueError):
    """A request the ledger refuses to carry out; the message says why and what to do."""


def release_id_for(run_id: str | int, server_round: int, task: Task) -> str:
    """The canonical id of one round's release, so a retried round maps to the same charge."""
    return f"run:{run_id}/round:{server_round}/task:{Task(task).value}"


def _format_pair(value: float, cap: float) -> tuple[str, str]:
    """Format two ε values with enough decimals that 'above the cap' is visible."""
    if math.isinf(value):
        return "infinity", f"{cap:g}"
    for digits in range(1, 7):
        shown, shown_cap = f"{value:.{digits}f}", f"{cap:.{digits}f}"
        if float(shown) != float(shown_cap):
            return shown, shown_cap
    return repr(value), repr(cap)


def _is_valid_cap(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


class PrivacyLedger:
    """SQLite-backed (WAL) privacy ledger for one node; safe to share between threads.

    On an existing file the stored settings win: a `cap_epsilon` lower than the stored cap lowers
    it (the stricter choice), a higher one is ignored, and a different `delta` or `client_id` is an
    error (every ε in the file is at the stored δ).
    """

    def __init__(
        self,
        path: Path,
        cap_epsilon: float = accounting.LIFETIME_EPSILON_CAP,
        delta: float = accounting.DEFAULT_DELTA,
        *,
        client_id: str | None = None,
        allow_cap_above_default: bool = False,
        clock: Callable[[], datetime] = store.now_utc,
    ) -> None:
        if not _is_valid_cap(cap_epsilon):
            raise LedgerError(f"the privacy cap must be a positive number, got {cap_epsilon!r}")
        if not 0 < delta < 1:
            raise LedgerError(f"delta must be between 0 and 1, got {delta!r}")
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._connection = store.connect(self.path)
        try:
            self._open_settings(cap_epsilon, delta, client_id, allow_cap_above_default)
            self.recovered_pending: tuple[str, ...] = self.recover()
        except BaseException:
            self._connection.close()
            raise

    @classmethod
    def in_data_dir(
        cls,
        data_dir: Path,
        cap_epsilon: float = accounting.LIFETIME_EPSILON_CAP,
        delta: float = accounting.DEFAULT_DELTA,
        *,
        allow_cap_above_default: bool = False,
    ) -> PrivacyLedger:
        """The ledger kept as one file in the node's data directory."""
        return cls(
            data_dir / LEDGER_FILENAME,
            cap_epsilon,
            delta,
            allow_cap_above_default=allow_cap_above_default,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file; the ledger object must not be used afterwards."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> PrivacyLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def recover(self) -> tuple[str, ...]:
        """Release ids left pending (e.g. by a crash between charge and send).

        They stay charged: the ledger cannot know whether they left, so it assumes they did.
        A caller that can prove one never left (training crashed before sending) may `abort` it;
        one that sent it should `commit` it.
        """
        with self._lock, store.snapshot(self._connection) as db:
            rows = db.execute(
                "SELECT release_id FROM releases WHERE state = ? ORDER BY seq",
                (ReleaseState.PENDING.value,),
            ).fetchall()
        return tuple(str(row["release_id"]) for row in rows)

    # -- settings ----------------------------------------------------------------------------

    def _open_settings(
        self, cap: float, delta: float, client_id: str | None, allow_above_default: bool
    ) -> None:
        with self._lock, store.immediate(self._connection) as db:
            row = db.execute("SELECT client_id, cap_epsilon, delta FROM settings").fetchone()
            if row is None:
                if cap > accounting.LIFETIME_EPSILON_CAP and not allow_above_default:
                    raise LedgerError(self._above_default_message(cap))
                moment = store.to_text(self._clock())
                db.execute(
                    "INSERT INTO settings (id, client_id, cap_epsilon, delta, created_at,"
                    " updated_at) VALUES (1, ?, ?, ?, ?, ?)",
                    (client_id or uuid.uuid4().hex, float(cap), float(delta), moment, moment),
                )
                return
            if client_id is not None and client_id != row["client_id"]:
                raise LedgerError(
                    f"this ledger belongs to client {row['client_id']!r}, not {client_id!r}"
                )
            if not math.isclose(float(row["delta"]), delta, rel_tol=1e-12):
                raise LedgerError(
                    f"this ledger accounts at delta {row['delta']:g}; it cannot be reopened at"
                    f" delta {delta:g}"
                )
            if cap < float(row["cap_epsilon"]):
                self._set_cap_locked(db, cap)

    @staticmethod
    def _above_default_message(cap: float) -> str:
        return (
            f"a cap of ε {cap:g} is above the default lifetime cap of "
            f"{accounting.LIFETIME_EPSILON_CAP:g}; going above it needs an explicit confirmation"
        )

    def _settings(self, db: sqlite3.Connection) -> sqlite3.Row:
        row = db.execute("SELECT * FROM settings").fetchone()
        if row is None:
            raise LedgerError("the privacy ledger has no settings row; the file is damaged")
        return row

    @property
    def client_id(self) -> str:
        with self._lock, store.snapshot(self._connection) as db:
            return str(self._settings(db)["client_id"])

    @property
    def cap_epsilon(self) -> float:
        with self._lock, store.snapshot(self._connection) as db:
            return float(self._settings(db)["cap_epsilon"])

    @property
    def delta(self) -> float:
        with self._lock, store.snapshot(self._connection) as db:
            return float(self._settings(db)["delta"])

    def lower_cap(self, new_cap: float) -> None:
        """Lower the lifetime cap; it cannot go below what is already spent (incl. pending)."""
        with self._lock, store.immediate(self._connection) as db:
            current = float(self._settings(db)["cap_epsilon"])
            if _is_valid_cap(new_cap) and new_cap > current:
                raise LedgerError(
                    f"ε {new_cap:g} is above the current cap of {current:g}; lower_cap only"
                    " lowers it (use set_cap to raise it)"
                )
            self._set_cap_locked(db, new_cap)

    def set_cap(self, new_cap: float, *, allow_above_default: bool = False) -> None:
        """Set the cap, e.g. back up after lowering it; above the default needs an explicit flag."""
        with self._lock, store.immediate(self._connection) as db:
            if (
                _is_valid_cap(new_cap)
                and new_cap > accounting.LIFETIME_EPSILON_CAP
                and not allow_above_default
            ):
                raise LedgerError(self._above_default_message(new_cap))
            self._set_cap_locked(db, new_cap)

    def _set_cap_locked(self, db: sqlite3.Connection, new_cap: float) -> None:
        if not _is_valid_cap(new_cap):
            raise LedgerError(f"the privacy cap must be a positive number, got {new_cap!r}")
        delta = float(self._settings(db)["delta"])
        spent = accounting.epsilon(self._charged(db), delta)
        if new_cap < spent:
            raise LedgerError(
                f"cannot set the cap to ε {new_cap:g}: ε {spent:.4g} is already spent"
                " (counting releases that may have left)"
            )
        db.execute(
            "UPDATE settings SET cap_epsilon = ?, updated_at = ? WHERE id = 1",
            (float(new_cap), store.to_text(self._clock())),
        )

    # -- consent -----------------------------------------------------------------------------

    def grant_consent(self, task: Task) -> None:
        """Record the retailer's consent to contribute to `task`."""
        self._set_consent(Task(task), granted=True)

    def withdraw_consent(self, task: Task) -> None:
        """Withdraw consent: later reservations for `task` are declined; past charges stay."""
        self._set_consent(Task(task), granted=False)

    def has_consent(self, task: Task) -> bool:
        """Whether the retailer currently consents to `task` (no record means no consent)."""
        with self._lock, store.snapshot(self._connection) as db:
            return self._consented(db, Task(task))

    def consents(self) -> dict[Task, bool]:
        """Current consent for every task."""
        with self._lock, store.snapshot(self._connection) as db:
            return {task: self._consented(db, task) for task in Task}

    def _set_consent(self, task: Task, *, granted: bool) -> None:
        moment = store.to_text(self._clock())
        with self._lock, store.immediate(self._connection) as db:
            db.execute(_GRANT if granted else _WITHDRAW, (task.value, int(granted), moment, moment))

    @staticmethod
    def _consented(db: sqlite3.Connection, task: Task) -> bool:
        row = db.execute("SELECT granted FROM consent WHERE task = ?", (task.value,)).fetchone()
        return row is not None and bool(row["granted"])

    # -- accounting --------------------------------------------------------------------------

    @staticmethod
    def _charged(
        db: sqlite3.Connection, excluding: str | None = None
    ) -> list[accounting.Mechanism]:
        """Every release that counts against the budget: committed and pending."""
        rows = db.execute(
            "SELECT release_id, noise_multiplier, sample_rate, steps FROM releases"
            " WHERE state IN (?, ?) ORDER BY seq",
            (ReleaseState.COMMITTED.value, ReleaseState.PENDING.value),
        ).fetchall()
        return [
            accounting.Mechanism(
                float(row["noise_multiplier"]), float(row["sample_rate"]), int(row["steps"])
            )
            for row in rows
            if row["release_id"] != excluding
        ]

    def spent_epsilon(self) -> float:
        """Composed ε of committed and pending releases (pending may have left)."""
        with self._lock, store.snapshot(self._connection) as db:
            delta = float(self._settings(db)["delta"])
            return accounting.epsilon(self._charged(db), delta)

    def calibrate(self, target_epsilon: float, sample_rate: float, steps: int) -> float:
        """Least noise for a round that raises the composed ε by at most `target_epsilon`.

        Calibrated against this ledger's own history, δ and cap, so a round asked for with the
        result is accepted by `reserve` (unless something else is charged first).
        """
        with self._lock, store.snapshot(self._connection) as db:
            settings = self._settings(db)
            charged = self._charged(db)
        try:
            return accounting.calibrate_noise_multiplier(
                target_epsilon,
                float(settings["delta"]),
                sample_rate,
                steps,
                already_spent_history=charged,
                cap_epsilon=float(settings["cap_epsilon"]),
            )
        except ValueError as error:
            raise LedgerError(str(error)) from error

    def quote(self, task: Task, noise_multiplier: float, sample_rate: float, steps: int) -> Quote:
        """What a release would bring the composed ε to; writes nothing."""
        problem = accounting.mechanism_problem(noise_multiplier, sample_rate, steps)
        if problem:
            raise LedgerError(problem)
        task = Task(task)
        mechanism = accounting.Mechanism(noise_multiplier, sample_rate, steps)
        with self._lock, store.snapshot(self._connection) as db:
            settings = self._settings(db)
            charged = self._charged(db)
            consent = self._consented(db, task)
        delta = float(settings["delta"])
        return Quote(
            task=task,
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps,
            epsilon_before=accounting.epsilon(charged, delta),
            epsilon_after=accounting.epsilon([*charged, mechanism], delta),
            cap_epsilon=float(settings["cap_epsilon"]),
            delta=delta,
            has_consent=consent,
        )

    def reserve_count(
        self, release_id: str, task: Task, noise_multiplier: float
    ) -> Reservation | Decline:
        """Reserve a plain Gaussian DP count release (sample rate 1, one step)."""
        return self.reserve(release_id, task, noise_multiplier, 1.0, 1, kind=ReleaseKind.COUNT)

    def reserve(
        self,
        release_id: str,
        task: Task | str,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        *,
        kind: ReleaseKind = ReleaseKind.TRAIN,
    ) -> Reservation | Decline:
        """Check consent and budget and charge the release, all before anything may leave.

        Idempotent per release id: a retried or replayed round gets its existing reservation back
        (`fresh=False`) and is not charged again; the same id with other parameters is declined.
        An aborted id may be reserved again (its earlier charge was released by the abort).
        """
        invalid = self._invalid(release_id, task, noise_multiplier, sample_rate, steps, kind)
        if invalid is not None:
            return Decline(str(release_id), DeclineCode.INVALID, invalid)
        task = Task(task)
        kind = ReleaseKind(kind)
        mechanism = accounting.Mechanism(noise_multiplier, sample_rate, steps)
        with self._lock, store.immediate(self._connection) as db:
            if not self._consented(db, task):
                return Decline(
                    release_id,
                    DeclineCode.NO_CONSENT,
                    f"no consent for {task.value}: grant consent for {task.label} to take part",
                )
            existing = db.execute(
                "SELECT * FROM releases WHERE release_id = ?", (release_id,)
            ).fetchone()
            if existing is not None and existing["state"] != ReleaseState.ABORTED.value:
                return self._existing(existing, task, kind, mechanism)
            settings = self._settings(db)
            cap, delta = float(settings["cap_epsilon"]), float(settings["delta"])
            after = accounting.epsilon([*self._charged(db, excluding=release_id), mechanism], delta)
            if not after <= cap:
                shown, shown_cap = _format_pair(after, cap)
                what = "this round" if kind is ReleaseKind.TRAIN else "this count release"
                return Decline(
                    release_id,
                    DeclineCode.BUDGET,
                    f"budget: {what} would bring ε to {shown}, above your cap of {shown_cap}",
                )
            moment = store.to_text(self._clock())
            values = (
                kind.value,
                task.value,
                float(noise_multiplier),
                float(sample_rate),
                int(steps),
                float(after),
                ReleaseState.PENDING.value,
                moment,
            )
            if existing is None:
                db.execute(
                    "INSERT INTO releases (kind, task, noise_multiplier, sample_rate, steps,"
                    " epsilon_after, state, updated_at, release_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, release_id, moment),
                )
            else:
                db.execute(
                    "UPDATE releases SET kind = ?, task = ?, noise_multiplier = ?,"
                    " sample_rate = ?, steps = ?, epsilon_after = ?, state = ?, updated_at = ?"
                    " WHERE release_id = ?",
                    (*values, release_id),
                )
        return Reservation(
            release_id=release_id,
            task=task,
            kind=kind,
            noise_multiplier=float(noise_multiplier),
            sample_rate=float(sample_rate),
            steps=int(steps),
            epsilon_after=float(after),
            state=ReleaseState.PENDING,
            fresh=True,
        )

    @staticmethod
    def _invalid(
        release_id: object,
        task: object,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        kind: object,
    ) -> str | None:
        if not isinstance(release_id, str) or not release_id.strip():
            return "a release needs a non-empty id"
        if len(release_id) > MAX_RELEASE_ID_LENGTH:
            return f"release ids are at most {MAX_RELEASE_ID_LENGTH} characters"
        if task not in {t.value for t in Task}:
            return f"unknown task {task!r}; known tasks: {', '.join(t.value for t in Task)}"
        if kind not in {k.value for k in ReleaseKind}:
            return f"unknown release kind {kind!r}"
        problem = accounting.mechanism_problem(noise_multiplier, sample_rate, steps)
        return None if problem is None else f"invalid release parameters: {problem}"

    @staticmethod
    def _existing(
        row: sqlite3.Row, task: Task, kind: ReleaseKind, mechanism: accounting.Mechanism
    ) -> Reservation | Decline:
        same = (
            row["task"] == task.value
            and row["kind"] == kind.value
            and float(row["noise_multiplier"]) == mechanism.noise_multiplier
            and float(row["sample_rate"]) == mechanism.sample_rate
            and int(row["steps"]) == mechanism.steps
        )
        if not same:
            return Decline(
                str(row["release_id"]),
                DeclineCode.CONFLICT,
                f"release {row['release_id']} was already charged with other parameters "
                f"(task {row['task']}, noise {row['noise_multiplier']:g}, sample rate "
                f"{row['sample_rate']:g}, {row['steps']} steps); a release id is charged once",
            )
        return Reservation(
            release_id=str(row["release_id"]),
            task=task,
            kind=kind,
            noise_multiplier=mechanism.noise_multiplier,
            sample_rate=mechanism.sample_rate,
            steps=mechanism.steps,
            epsilon_after=float(row["epsilon_after"]),
            state=ReleaseState(row["state"]),
            fresh=False,
        )

    # -- commit / abort ----------------------------------------------------------------------

    def commit(self, release_id: str) -> None:
        """Mark a pending release as sent; final. Committing twice is a no-op."""
        with self._lock, store.immediate(self._connection) as db:
            state = self._state(db, release_id)
            if state is ReleaseState.ABORTED:
                raise LedgerError(
                    f"release {release_id} was aborted (it never left); reserve it again before"
                    " sending"
                )
            if state is ReleaseState.PENDING:
                self._move(db, release_id, ReleaseState.COMMITTED)

    def abort(self, release_id: str) -> None:
        """Release the charge of a pending release that provably never left the node.

        Only for releases whose output was never sent (e.g. training crashed first); anything
        that may have been sent must stay charged. Committed releases cannot be aborted.
        """
        with self._lock, store.immediate(self._connection) as db:
            state = self._state(db, release_id)
            if state is ReleaseState.COMMITTED:
                raise LedgerError(
                    f"release {release_id} is committed; committed releases are final"
                )
            if state is ReleaseState.PENDING:
                self._move(db, release_id, ReleaseState.ABORTED)

    @staticmethod
    def _state(db: sqlite3.Connection, release_id: str) -> ReleaseState:
        row = db.execute(
            "SELECT state FROM releases WHERE release_id = ?", (release_id,)
        ).fetchone()
        if row is None:
            raise LedgerError(f"no release {release_id!r} in the privacy ledger")
        return ReleaseState(row["state"])

    def _move(self, db: sqlite3.Connection, release_id: str, state: ReleaseState) -> None:
        db.execute(
            "UPDATE releases SET state = ?, updated_at = ? WHERE release_id = ?",
            (state.value, store.to_text(self._clock()), release_id),
        )

    # -- status ------------------------------------------------------------------------------

    def status(self) -> PrivacyBudget:
        """The design's PrivacyBudget plus per-release history (ε after each release)."""
        with self._lock, store.snapshot(self._connection) as db:
            settings = self._settings(db)
            rows = db.execute("SELECT * FROM releases ORDER BY seq").fetchall()
        delta, cap = float(settings["delta"]), float(settings["cap_epsilon"])
        records = tuple(_history(rows, delta))
        charged = [
            accounting.Mechanism(r.noise_multiplier, r.sample_rate, r.steps)
            for r in records
            if r.state is not ReleaseState.ABORTED
        ]
        spent = accounting.epsilon(charged, delta)
        updated = [store.from_text(str(settings["updated_at"]))]
        updated += [record.updated_at for record in records]
        return PrivacyBudget(
            client_id=str(settings["client_id"]),
            total_epsilon=cap,
            spent_epsilon=spent,
            remaining_epsilon=max(0.0, cap - spent),
            delta=delta,
            last_updated=max(updated),
            releases=records,
        )


def _history(rows: Iterable[sqlite3.Row], delta: float) -> Iterable[ReleaseRecord]:
    """Release rows with the composed ε recomputed after each non-aborted one."""
    curve = np.zeros(len(accounting.ORDERS), dtype=np.float64)
    for row in rows:
        state = ReleaseState(row["state"])
        mechanism = accounting.Mechanism(
            float(row["noise_multiplier"]), float(row["sample_rate"]), int(row["steps"])
        )
        cumulative: float | None = None
        if state is not ReleaseState.ABORTED:
            curve = curve + accounting.rdp_curve([mechanism])
            cumulative = accounting.epsilon_from_rdp(curve, delta)
        yield ReleaseRecord(
            release_id=str(row["release_id"]),
            kind=ReleaseKind(row["kind"]),
            task=Task(row["task"]),
            noise_multiplier=mechanism.noise_multiplier,
            sample_rate=mechanism.sample_rate,
            steps=mechanism.steps,
            state=state,
            epsilon_after=float(row["epsilon_after"]),
            cumulative_epsilon=cumulative,
            created_at=store.from_text(str(row["created_at"])),
            updated_at=store.from_text(str(row["updated_at"])),
        )
