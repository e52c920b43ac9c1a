"""The Connect page: enroll this shop's node with the coordinator.

Thin on purpose: the steps and their messages are ``desktop_client.viewmodels.connect``'s;
this widget lays them out, runs the network steps and the password-store probe on a
QThreadPool worker (the window never waits on the network) and shows each result in words.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from desktop_client.gui.context import AppContext
from desktop_client.viewmodels.connect import (
    ConnectError,
    ConnectViewModel,
    EnrolledSummary,
    EnrollRequest,
    unexpected,
)
from shared.enrollment import CoordinatorCA
from shared.secret_store import KeyringStatus, KeyStore


class _JobSignals(QObject):
    finished = Signal(int, object)  # job id, result
    failed = Signal(int, str)  # job id, message


class _Job(QRunnable):
    """Runs one view-model call on the pool; the result or a plain message comes back as a
    signal (queued to the GUI thread). Never lets an exception out."""

    def __init__(
        self, job_id: int, work: Callable[[], Any], action: str, *, blocking: bool
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.work = work
        self.action = action
        self.blocking = blocking  # the form waits for it (the password-store probe does not)
        self.signals = _JobSignals()

    @Slot()
    def run(self) -> None:
        try:
            result = self.work()
        except ConnectError as exc:
            self.signals.failed.emit(self.job_id, str(exc))
        except Exception as exc:  # a bug must become a message, never a traceback
            self.signals.failed.emit(self.job_id, unexpected(self.action, exc))
        else:
            self.signals.finished.emit(self.job_id, result)


class ConnectPage(QWidget):
    """Coordinator address, fingerprint check, key store choice, token, enroll."""

    checked = Signal(bool)  # the coordinator check ended (True: fingerprint shown)
    enrolled = Signal(bool)  # an enrollment attempt ended (True: enrolled)
    keyring_checked = Signal(bool)  # the password-store probe ended (True: it works)

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.viewmodel = ConnectViewModel(context.node_dir)
        self._keyring: KeyringStatus | None = None
        # Running jobs by id, with what to call on success and on failure.
        self._jobs: dict[int, tuple[_Job, Callable[[Any], None], Callable[[str], None]]] = {}
        self._next_job = 0
        self._replacing = False
        self._probing = False
        self._build()
        self._show_state()

    @property
    def title(self) -> str:
        return self.tr("Connect")

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel(
            self.tr(
                "Connect this shop to the coordinator of your federation once. You need its "
                "address and the one-time enrollment token from its admin."
            )
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.viewer_note = QLabel(
            self.tr("View-only mode: only the shop owner can connect this computer.")
        )
        self.viewer_note.setVisible(self.context.viewer)
        layout.addWidget(self.viewer_note)

        self.enrolled_box = QGroupBox(self.tr("Connected"))
        form = QFormLayout(self.enrolled_box)
        self.coordinator_value = self._value(form, self.tr("Coordinator"))
        self.retailer_value = self._value(form, self.tr("Shop"))
        self.fingerprint_value = self._value(form, self.tr("Certificate fingerprint"))
        self.key_store_value = self._value(form, self.tr("Private key kept in"))
        self.registration_value = self._value(form, self.tr("Federation"))
        self.again_button = QPushButton(self.tr("Connect again with a new token…"))
        self.again_button.setAccessibleName(self.tr("Connect again"))
        self.again_button.clicked.connect(self._start_again)
        form.addRow(self.again_button)
        layout.addWidget(self.enrolled_box)

        self.form_box = QGroupBox(self.tr("Connect to a coordinator"))
        steps = QVBoxLayout(self.form_box)
        steps.addWidget(QLabel(self.tr("1. The coordinator's address")))
        row = QHBoxLayout()
        self.address_edit = QLineEdit()
        self.address_edit.setPlaceholderText("http://coordinator.example:8000")
        self.address_edit.setAccessibleName(self.tr("Coordinator address"))
        self.address_edit.textChanged.connect(self._address_changed)
        self.address_edit.returnPressed.connect(self._check)
        self.check_button = QPushButton(self.tr("Check coordinator"))
        self.check_button.setAccessibleName(self.tr("Check coordinator"))
        self.check_button.clicked.connect(self._check)
        row.addWidget(self.address_edit, 1)
        row.addWidget(self.check_button)
        steps.addLayout(row)
        self.ca_label = QLabel()
        self.ca_label.setWordWrap(True)
        self.ca_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.ca_label.setAccessibleName(self.tr("Coordinator certificate fingerprint"))
        steps.addWidget(self.ca_label)
        self.confirm_check = QCheckBox(
            self.tr("This is the fingerprint the coordinator's admin gave me")
        )
        self.confirm_check.setAccessibleName(self.tr("Fingerprint confirmed"))
        self.confirm_check.toggled.connect(self._update)
        steps.addWidget(self.confirm_check)

        steps.addWidget(QLabel(self.tr("2. Where to keep this computer's private key")))
        self.store_group = QButtonGroup(self)
        self.keyring_radio = QRadioButton(self.tr("This computer's password store (recommended)"))
        self.encrypted_radio = QRadioButton(self.tr("A file protected by a passphrase"))
        self.file_radio = QRadioButton(self.tr("A plain file only my user can read (servers)"))
        for radio, store in (
            (self.keyring_radio, KeyStore.KEYRING),
            (self.encrypted_radio, KeyStore.ENCRYPTED),
            (self.file_radio, KeyStore.FILE),
        ):
            radio.setAccessibleName(radio.text())
            radio.setProperty("key_store", store.value)
            self.store_group.addButton(radio)
            steps.addWidget(radio)
        self.store_group.buttonToggled.connect(lambda *_: self._update())
        self.keyring_label = QLabel(self.tr("Checking this computer's password store…"))
        self.keyring_label.setWordWrap(True)
        self.keyring_label.setAccessibleName(self.tr("Password store"))
        steps.addWidget(self.keyring_label)
        passphrases = QFormLayout()
        self.passphrase_edit = self._secret(self.tr("Passphrase"))
        self.confirm_edit = self._secret(self.tr("Passphrase again"))
        passphrases.addRow(self.tr("Passphrase"), self.passphrase_edit)
        passphrases.addRow(self.tr("Passphrase again"), self.confirm_edit)
        self.passphrase_box = QWidget()
        self.passphrase_box.setLayout(passphrases)
        steps.addWidget(self.passphrase_box)

        steps.addWidget(QLabel(self.tr("3. The enrollment token")))
        row = QHBoxLayout()
        self.token_edit = self._secret(self.tr("Enrollment token"))
        self.token_edit.returnPressed.connect(self._enroll)
        self.enroll_button = QPushButton(self.tr("Connect"))
        self.enroll_button.setAccessibleName(self.tr("Connect with this token"))
        self.enroll_button.clicked.connect(self._enroll)
        self.cancel_button = QPushButton(self.tr("Keep the current connection"))
        self.cancel_button.setAccessibleName(self.tr("Keep the current connection"))
        self.cancel_button.clicked.connect(self._cancel_again)
        row.addWidget(self.token_edit, 1)
        row.addWidget(self.enroll_button)
        row.addWidget(self.cancel_button)
        steps.addLayout(row)
        self.hint_label = QLabel()
        self.hint_label.setWordWrap(True)
        self.hint_label.setAccessibleName(self.tr("What is missing"))
        steps.addWidget(self.hint_label)
        layout.addWidget(self.form_box)

        busy = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # indeterminate: the network gives no progress
        self.progress.setAccessibleName(self.tr("Working"))
        self.progress.setVisible(False)
        busy.addWidget(self.progress)
        layout.addLayout(busy)
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label.setAccessibleName(self.tr("Message"))
        layout.addWidget(self.message_label)
        layout.addStretch(1)

        order = [
            self.again_button,
            self.address_edit,
            self.check_button,
            self.confirm_check,
            self.keyring_radio,
            self.encrypted_radio,
            self.file_radio,
            self.passphrase_edit,
            self.confirm_edit,
            self.token_edit,
            self.enroll_button,
            self.cancel_button,
        ]
        for first, second in itertools.pairwise(order):
            QWidget.setTabOrder(first, second)

    def _value(self, form: QFormLayout, label: str) -> QLabel:
        value = QLabel()
        value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        value.setAccessibleName(label)
        value.setWordWrap(True)
        form.addRow(label, value)
        return value

    def _secret(self, name: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setEchoMode(QLineEdit.EchoMode.Password)
        edit.setAccessibleName(name)
        edit.textChanged.connect(self._update)
        return edit

    # -- state ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Show the stored enrollment; probe the password store once (on the pool)."""
        self._show_state()
        if not self.context.viewer and self._keyring is None and not self._probing:
            self._probing = True
            self._run(self.viewmodel.keyring, self.tr("checking the password store"),
                      self._keyring_done, self._keyring_failed, blocking=False)  # fmt: skip

    @property
    def busy(self) -> bool:
        """A check or an enrollment is running (the probe does not block the form)."""
        return any(job.blocking for job, _, _ in self._jobs.values())

    def _show_state(self) -> None:
        summary = self.viewmodel.summary()
        if summary is not None:
            self._show_summary(summary)
        self.enrolled_box.setVisible(summary is not None)
        self.form_box.setVisible(summary is None or (self._replacing and not self.context.viewer))
        self._update()

    def _show_summary(self, summary: EnrolledSummary) -> None:
        self.coordinator_value.setText(summary.coordinator)
        self.retailer_value.setText(summary.retailer)
        self.fingerprint_value.setText(summary.fingerprint)
        self.key_store_value.setText(summary.key_store)
        self.registration_value.setText(summary.registration)

    def _store(self) -> KeyStore | None:
        button = self.store_group.checkedButton()
        return None if button is None else KeyStore(str(button.property("key_store")))

    def _request(self) -> EnrollRequest:
        return EnrollRequest(
            address=self.address_edit.text(),
            token=self.token_edit.text(),
            key_store=self._store() or KeyStore.KEYRING,
            passphrase=self.passphrase_edit.text(),
            confirmation=self.confirm_edit.text(),
        )

    def _update(self) -> None:
        editable = not self.context.viewer and not self.busy
        checked = self.viewmodel.checked
        self.again_button.setVisible(not self.context.viewer and not self._replacing)
        self.again_button.setEnabled(editable)
        self.cancel_button.setVisible(self._replacing)
        self.cancel_button.setEnabled(editable)
        self.address_edit.setEnabled(editable)
        self.check_button.setEnabled(editable and bool(self.address_edit.text().strip()))
        self.ca_label.setVisible(checked is not None)
        self.confirm_check.setVisible(checked is not None)
        self.confirm_check.setEnabled(editable)
        keyring_works = self._keyring is not None and self._keyring.available
        self.keyring_radio.setEnabled(editable and keyring_works)
        self.encrypted_radio.setEnabled(editable)
        self.file_radio.setEnabled(editable)
        self.passphrase_box.setVisible(self._store() is KeyStore.ENCRYPTED)
        for edit in (self.passphrase_edit, self.confirm_edit, self.token_edit):
            edit.setEnabled(editable)
        problem = self.viewmodel.problem(self._request(), self._keyring)
        if problem is None and checked is not None and not self.confirm_check.isChecked():
            problem = self.tr("Tick the box once the fingerprint matches.")
        if problem is None and self._store() is None:
            problem = self.tr("Choose where to keep the private key.")
        self.enroll_button.setEnabled(editable and problem is None)
        self.hint_label.setText(problem or "")
        self.progress.setVisible(self.busy)

    def _message(self, text: str, *, error: bool) -> None:
        self.message_label.setText(text)
        self.message_label.setProperty("error", error)
        self.message_label.setStyleSheet("color: #b00020;" if error else "")

    # -- actions --------------------------------------------------------------------------

    def _run(
        self,
        work: Callable[[], Any],
        action: str,
        done: Callable[[Any], None],
        failed: Callable[[str], None],
        *,
        blocking: bool = True,
    ) -> None:
        self._next_job += 1
        job = _Job(self._next_job, work, action, blocking=blocking)
        job.setAutoDelete(False)  # kept in _jobs until its result is handled
        # Bound slots of this widget: queued to the GUI thread whatever thread emits.
        job.signals.finished.connect(self._job_finished)
        job.signals.failed.connect(self._job_failed)
        self._jobs[job.job_id] = (job, done, failed)
        self._update()
        QThreadPool.globalInstance().start(job)

    @Slot(int, object)
    def _job_finished(self, job_id: int, result: object) -> None:
        entry = self._jobs.pop(job_id, None)
        if entry is not None:
            entry[1](result)
        self._update()

    @Slot(int, str)
    def _job_failed(self, job_id: int, message: str) -> None:
        entry = self._jobs.pop(job_id, None)
        if entry is not None:
            entry[2](message)
        self._update()

    def _address_changed(self, text: str) -> None:
        before = self.viewmodel.checked
        self.viewmodel.address_changed(text)
        if before is not None and self.viewmodel.checked is None:
            self.confirm_check.setChecked(False)
        self._update()

    def _check(self) -> None:
        if self.busy or self.context.viewer or not self.address_edit.text().strip():
            return
        address = self.address_edit.text()
        self.confirm_check.setChecked(False)
        self._message(self.tr("Contacting the coordinator…"), error=False)
        self._run(lambda: self.viewmodel.check(address), self.tr("checking the coordinator"),
                  self._check_done, self._check_failed)  # fmt: skip

    def _check_done(self, result: object) -> None:
        if not isinstance(result, CoordinatorCA):
            return
        self.ca_label.setText(
            self.tr(
                "The coordinator at {address} presents a certificate with this SHA-256 "
                "fingerprint:\n{fingerprint}\nCompare it with the one its admin gave you."
            ).format(address=result.api_url, fingerprint=result.fingerprint)
        )
        self._message("", error=False)
        self.checked.emit(True)

    def _check_failed(self, message: str) -> None:
        self._message(message, error=True)
        self.checked.emit(False)

    def _keyring_done(self, result: object) -> None:
        self._probing = False
        if not isinstance(result, KeyringStatus):
            return
        self._keyring = result
        self.keyring_label.setText(result.explanation)
        if self._store() is None or not result.available:
            radio = self.keyring_radio if result.available else self.encrypted_radio
            radio.setChecked(True)
        self.keyring_checked.emit(result.available)

    def _keyring_failed(self, message: str) -> None:
        self._keyring_done(KeyringStatus(False, "none", message))

    def _enroll(self) -> None:
        if self.busy or self.context.viewer or not self.enroll_button.isEnabled():
            return
        request = self._request()
        keyring = self._keyring
        self._message(self.tr("Connecting this shop to the coordinator…"), error=False)
        self._run(lambda: self.viewmodel.enroll(request, keyring),
                  self.tr("connecting to the coordinator"),
                  self._enroll_done, self._enroll_failed)  # fmt: skip

    def _enroll_done(self, result: object) -> None:
        if not isinstance(result, EnrolledSummary):
            return
        self._replacing = False
        for edit in (self.token_edit, self.passphrase_edit, self.confirm_edit):
            edit.clear()
        self._show_state()
        self._message(
            self.tr("Connected as {shop}. Your node can now take part in training.").format(
                shop=result.retailer
            ),
            error=False,
        )
        self.context.signals.enrollment_changed.emit()
        self.enrolled.emit(True)

    def _enroll_failed(self, message: str) -> None:
        self._message(message, error=True)
        self.enrolled.emit(False)

    def _start_again(self) -> None:
        self._replacing = True
        self._message(
            self.tr(
                "Connecting again makes a new key and needs a new token; the current "
                "connection stays until the new one succeeds."
            ),
            error=False,
        )
        self._show_state()
        self.address_edit.setFocus()

    def _cancel_again(self) -> None:
        self._replacing = False
        self._message("", error=False)
        self._show_state()
