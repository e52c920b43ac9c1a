"""The Connect page, driven as a shop owner would, against a real coordinator API on loopback.

The coordinator is ``create_app`` over a real database and PKI served by uvicorn (the fixture
of ``test_enroll_cli``); the password store is keyrings.alt's file keyring in a temporary
directory, or keyring's fail backend for a computer without one. Checked: a wrong token, an
unreachable address, a successful enrollment (state shown, signal emitted, key in the
keyring), the encrypted-file alternative when no keyring works, and the read-only viewer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QAbstractButton, QLineEdit
from pytestqt.qtbot import QtBot

from coordinator.config import free_port
from desktop_client.gui.context import AppContext
from desktop_client.gui.pages.connect import ConnectPage
from shared.enrollment import CREDENTIALS_FILE, ENROLLMENT_DIR, load_enrollment
from shared.secret_store import SERVICE, KeyStore, load_node_key
from tests.desktop_client.test_enroll_cli import Coord, coordinator  # noqa: F401 - fixture
from tests.keyring_support import use_no_keyring, use_test_keyring

WAIT_MS = 30_000  # a hang guard only: the network steps answer in well under a second here
PASSPHRASE = "a long shop passphrase"  # noqa: S105 - a test passphrase


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    return AppContext(node_dir=tmp_path / "node", settings=settings)


def _page(qtbot: QtBot, context: AppContext, *, keyring_works: bool) -> ConnectPage:
    page = ConnectPage(context)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitExposed(page)
    with qtbot.waitSignal(page.keyring_checked, timeout=WAIT_MS) as probe:
        page.refresh()
    assert probe.args == [keyring_works]
    return page


def _click(qtbot: QtBot, button: QAbstractButton) -> None:
    assert button.isVisible() and button.isEnabled(), button.accessibleName()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _type(qtbot: QtBot, edit: QLineEdit, text: str) -> None:
    edit.setFocus()
    qtbot.keyClicks(edit, text)


def _check(qtbot: QtBot, page: ConnectPage, address: str) -> list[Any]:
    _type(qtbot, page.address_edit, address)
    with qtbot.waitSignal(page.checked, timeout=WAIT_MS) as done:
        _click(qtbot, page.check_button)
        assert page.progress.isVisible()  # busy while the coordinator is asked
        assert not page.check_button.isEnabled()
    return list(done.args)


def _enroll(qtbot: QtBot, page: ConnectPage, token: str) -> bool:
    _type(qtbot, page.token_edit, token)
    with qtbot.waitSignal(page.enrolled, timeout=WAIT_MS) as done:
        _click(qtbot, page.enroll_button)
    return bool(done.args[0])


def _checked_and_confirmed(qtbot: QtBot, page: ConnectPage, coord: Coord) -> None:
    assert _check(qtbot, page, coord.url) == [True]
    assert coord.fingerprint in page.ca_label.text()  # shown before any token is spent
    assert not page.enroll_button.isEnabled()  # not before the owner confirms it
    page.confirm_check.setFocus()
    qtbot.keyClick(page.confirm_check, Qt.Key.Key_Space)
    assert page.confirm_check.isChecked()


def test_a_wrong_token_is_refused_in_plain_words(
    qtbot: QtBot,
    context: AppContext,
    coordinator: Coord,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    use_test_keyring(monkeypatch, tmp_path / "keyring")
    page = _page(qtbot, context, keyring_works=True)
    assert page.keyring_radio.isChecked()  # the recommended store when it works
    _checked_and_confirmed(qtbot, page, coordinator)
    assert not _enroll(qtbot, page, "rip_e_not-the-token")
    message = page.message_label.text()
    assert "refused the token" in message and "unknown enrollment token" in message
    assert "Traceback" not in message
    assert not page.enrolled_box.isVisible()
    assert not (context.node_dir / ENROLLMENT_DIR).exists()


def test_the_right_token_enrolls_and_shows_the_connection(
    qtbot: QtBot,
    context: AppContext,
    coordinator: Coord,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    backend: Any = use_test_keyring(monkeypatch, tmp_path / "keyring")
    page = _page(qtbot, context, keyring_works=True)
    _checked_and_confirmed(qtbot, page, coordinator)
    with qtbot.waitSignal(context.signals.enrollment_changed, timeout=WAIT_MS):
        assert _enroll(qtbot, page, coordinator.token("Corner Shop"))
    assert page.enrolled_box.isVisible() and not page.form_box.isVisible()
    assert page.coordinator_value.text() == coordinator.url
    assert "Corner Shop" in page.retailer_value.text()
    assert page.fingerprint_value.text() == coordinator.fingerprint
    assert "password store" in page.key_store_value.text()
    assert "Connected as Corner Shop" in page.message_label.text()
    assert page.token_edit.text() == ""  # the spent token is not kept in the form

    enrollment = load_enrollment(context.node_dir)
    assert enrollment is not None and enrollment.key_store is KeyStore.KEYRING
    stored = backend.get_password(SERVICE, enrollment.key_location.keyring_username)
    assert stored is not None and stored.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert not (context.node_dir / ENROLLMENT_DIR / "node.key").exists()

    # A page opened later shows the stored connection straight away.
    again = ConnectPage(context)
    qtbot.addWidget(again)
    again.show()
    assert again.enrolled_box.isVisible() and not again.form_box.isVisible()
    assert again.fingerprint_value.text() == coordinator.fingerprint


def test_an_unreachable_coordinator_is_said_plainly(
    qtbot: QtBot, context: AppContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_test_keyring(monkeypatch, tmp_path / "keyring")
    page = _page(qtbot, context, keyring_works=True)
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert _check(qtbot, page, address) == [False]
    message = page.message_label.text()
    assert message.startswith("Cannot reach the coordinator at " + address)
    assert "Traceback" not in message
    assert not page.confirm_check.isVisible()
    assert not page.enroll_button.isEnabled()
    assert page.check_button.isEnabled()  # the owner can fix the address and try again


def test_without_a_keyring_the_encrypted_file_is_offered_and_works(
    qtbot: QtBot,
    context: AppContext,
    coordinator: Coord,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_no_keyring(monkeypatch)
    page = _page(qtbot, context, keyring_works=False)
    assert page.keyring_label.text().startswith("No secure password store is available")
    assert "file protected by a passphrase" in page.keyring_label.text()
    assert not page.keyring_radio.isEnabled()
    assert page.encrypted_radio.isChecked()
    assert page.passphrase_edit.isVisible() and page.confirm_edit.isVisible()
    assert page.passphrase_edit.echoMode() == QLineEdit.EchoMode.Password

    _checked_and_confirmed(qtbot, page, coordinator)
    _type(qtbot, page.passphrase_edit, PASSPHRASE)
    _type(qtbot, page.confirm_edit, PASSPHRASE + "x")
    _type(qtbot, page.token_edit, coordinator.token("Headless Shop"))
    assert not page.enroll_button.isEnabled()
    assert "differ" in page.hint_label.text()
    page.confirm_edit.setFocus()
    qtbot.keyClick(page.confirm_edit, Qt.Key.Key_Backspace)
    assert page.enroll_button.isEnabled(), page.hint_label.text()
    with qtbot.waitSignal(page.enrolled, timeout=WAIT_MS) as done:
        _click(qtbot, page.enroll_button)
    assert done.args == [True], page.message_label.text()
    assert "passphrase" in page.key_store_value.text()

    enrollment = load_enrollment(context.node_dir)
    assert enrollment is not None and enrollment.key_store is KeyStore.ENCRYPTED
    assert load_node_key(enrollment.key_location, PASSPHRASE).startswith(b"-----BEGIN OPENSSH")
    saved = (context.node_dir / ENROLLMENT_DIR / CREDENTIALS_FILE).read_text()
    assert json.loads(saved)["key_store"] == "encrypted" and PASSPHRASE not in saved


def test_the_plain_file_can_be_chosen_for_a_server(
    qtbot: QtBot,
    context: AppContext,
    coordinator: Coord,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_no_keyring(monkeypatch)
    page = _page(qtbot, context, keyring_works=False)
    _click(qtbot, page.file_radio)
    assert not page.passphrase_edit.isVisible()
    _checked_and_confirmed(qtbot, page, coordinator)
    assert _enroll(qtbot, page, coordinator.token("Server Shop")), page.message_label.text()
    assert (context.node_dir / ENROLLMENT_DIR / "node.key").stat().st_mode & 0o777 == 0o600


def test_changing_the_address_after_the_check_asks_for_a_new_check(
    qtbot: QtBot,
    context: AppContext,
    coordinator: Coord,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    use_test_keyring(monkeypatch, tmp_path / "keyring")
    page = _page(qtbot, context, keyring_works=True)
    _checked_and_confirmed(qtbot, page, coordinator)
    _type(qtbot, page.token_edit, coordinator.token("Shop"))
    assert page.enroll_button.isEnabled()
    _type(qtbot, page.address_edit, "0")  # another port: not the coordinator just checked
    assert not page.enroll_button.isEnabled()
    assert not page.confirm_check.isVisible()
    assert "check the coordinator" in page.hint_label.text()


def test_the_viewer_mode_builds_read_only(qtbot: QtBot, tmp_path: Path) -> None:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    context = AppContext(node_dir=tmp_path / "node", viewer=True, settings=settings)
    page = ConnectPage(context)
    qtbot.addWidget(page)
    page.show()
    page.refresh()
    assert page.title == "Connect"
    assert page.viewer_note.isVisible()
    for widget in (page.address_edit, page.check_button, page.token_edit, page.enroll_button,
                   page.keyring_radio, page.encrypted_radio, page.file_radio):  # fmt: skip
        assert not widget.isEnabled(), widget.accessibleName()
    assert page._jobs == {}  # no password-store probe for a store manager
