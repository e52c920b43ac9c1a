"""What the Connect page shows and does, in plain Python (the page only draws it).

Enrolling is three steps for the owner: check the coordinator (its CA fingerprint is shown to
compare with the one the coordinator's admin reads out; no token is spent), choose where the
node's private key is kept, enroll with the one-time token. The enrollment then pins exactly
the CA the owner confirmed (``expected_fingerprint``), so a coordinator that changes its CA in
between is refused. Every failure becomes one plain sentence (:class:`ConnectError`); the
network calls are meant to run on a worker thread (the page does that), the rest is instant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import httpx
from PySide6.QtCore import QCoreApplication

from shared.enrollment import (
    CoordinatorCA,
    EnrollmentError,
    NodeEnrollment,
    enroll,
    fetch_coordinator_ca,
    load_enrollment,
    normalise_api_url,
)
from shared.secret_store import KeyringStatus, KeyStore, keyring_status, passphrase_problem

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 15.0
ENROLL_TIMEOUT = 30.0


def _tr(text: str) -> str:
    return QCoreApplication.translate("Connect", text)


class ConnectError(Exception):
    """A step failed; the message is shown to the owner as it is."""


@dataclass(frozen=True)
class EnrolledSummary:
    """The enrolled state, as the page shows it."""

    coordinator: str
    retailer: str
    fingerprint: str
    key_store: str  # where the key is, in words
    registration: str


@dataclass(frozen=True)
class EnrollRequest:
    """What the owner filled in."""

    address: str
    token: str
    key_store: KeyStore
    passphrase: str = ""
    confirmation: str = ""


def sentence(text: str) -> str:
    """The shared modules' reasons start lower-case (they follow "error: " on a terminal)."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


class ConnectViewModel:
    """Enrollment for one node directory."""

    def __init__(self, node_dir: Path, *, transport: httpx.BaseTransport | None = None) -> None:
        self.node_dir = Path(node_dir)
        self._transport = transport  # tests talk to an in-process coordinator
        self._checked: CoordinatorCA | None = None

    # -- state ----------------------------------------------------------------------------

    def enrollment(self) -> NodeEnrollment | None:
        return load_enrollment(self.node_dir)

    def summary(self) -> EnrolledSummary | None:
        enrollment = self.enrollment()
        if enrollment is None:
            return None
        store = {
            KeyStore.KEYRING: _tr("this computer's password store"),
            KeyStore.ENCRYPTED: _tr("a file protected by your passphrase"),
            KeyStore.FILE: _tr("a plain file only your user can read"),
        }[enrollment.key_store]
        registration = (
            _tr("registered with the federation")
            if enrollment.registration == "registered"
            else _tr("registration still pending at the coordinator")
        )
        return EnrolledSummary(
            coordinator=enrollment.api_url,
            retailer=f"{enrollment.retailer_name} (#{enrollment.retailer_id})",
            fingerprint=enrollment.ca_fingerprint,
            key_store=store,
            registration=registration,
        )

    @property
    def checked(self) -> CoordinatorCA | None:
        """The coordinator whose CA the owner was shown (None until checked)."""
        return self._checked

    def address_changed(self, address: str) -> None:
        """A different address must be checked again before enrolling."""
        if self._checked is not None and _normalised(address) != self._checked.api_url:
            self._checked = None

    # -- key store ------------------------------------------------------------------------

    @staticmethod
    def keyring() -> KeyringStatus:
        """Probe the OS password store (may talk to a desktop service: off the GUI thread)."""
        return keyring_status()

    @staticmethod
    def default_store(status: KeyringStatus) -> KeyStore:
        return KeyStore.KEYRING if status.available else KeyStore.ENCRYPTED

    # -- steps ----------------------------------------------------------------------------

    def check(self, address: str) -> CoordinatorCA:
        """Fetch the coordinator's CA; remember it for :meth:`enroll` (network: worker)."""
        self._checked = None
        try:
            ca = fetch_coordinator_ca(address, timeout=CHECK_TIMEOUT, transport=self._transport)
        except EnrollmentError as exc:
            raise ConnectError(_explain(exc)) from None
        self._checked = ca
        return ca

    def problem(self, request: EnrollRequest, keyring: KeyringStatus | None) -> str | None:
        """Why Enroll cannot run yet, or None (instant; the button says it too)."""
        if self._checked is None or _normalised(request.address) != self._checked.api_url:
            return _tr("First check the coordinator and compare its fingerprint.")
        if not request.token.strip():
            return _tr("Paste the enrollment token the coordinator's admin gave you.")
        if request.key_store is KeyStore.KEYRING and (keyring is None or not keyring.available):
            return (
                keyring.explanation
                if keyring is not None
                else _tr("Still checking this computer's password store.")
            )
        if request.key_store is KeyStore.ENCRYPTED:
            weak = passphrase_problem(request.passphrase, request.confirmation)
            if weak is not None:
                return weak
        return None

    def enroll(self, request: EnrollRequest, keyring: KeyringStatus | None) -> EnrolledSummary:
        """Enroll with the checked coordinator (network: worker). Replaces an existing
        enrollment only when the owner asked for it on the page (it is then not None)."""
        problem = self.problem(request, keyring)
        if problem is not None or self._checked is None:
            raise ConnectError(problem or _tr("First check the coordinator."))
        try:
            enroll(
                self._checked.api_url,
                request.token,
                self.node_dir,
                timeout=ENROLL_TIMEOUT,
                force=self.enrollment() is not None,
                expected_fingerprint=self._checked.fingerprint,
                key_store=request.key_store,
                passphrase=request.passphrase or None,
                transport=self._transport,
            )
        except EnrollmentError as exc:
            raise ConnectError(_explain(exc)) from None
        summary = self.summary()
        if summary is None:  # enroll() wrote it; only a disk failure gets here
            raise ConnectError(_tr("The enrollment could not be read back from the disk."))
        return summary


def _normalised(address: str) -> str | None:
    try:
        return normalise_api_url(address)
    except ValueError:
        return None


def _explain(exc: EnrollmentError) -> str:
    """The shared module's reason, with what to do for the usual refusals."""
    reason = exc.reason
    if exc.status_code == 403:
        return _tr(
            "The coordinator refused the token ({reason}). Check that you pasted the whole "
            "token, or ask the coordinator's admin for a new one."
        ).format(reason=reason.removeprefix("enrollment refused: "))
    if "not the one you were given" in reason:
        return _tr(
            "The coordinator now presents a different certificate from the one you confirmed. "
            "Nothing was stored and the token may be spent: do not enroll until the "
            "coordinator's admin explains."
        )
    return sentence(reason)


def unexpected(action: str, exc: BaseException) -> str:
    """A bug or an unforeseen failure: logged with its traceback, shown as one sentence."""
    log.error("%s failed", action, exc_info=exc)
    return _tr("Something went wrong while {action}: {error}. Please try again.").format(
        action=action, error=str(exc) or type(exc).__name__
    )
