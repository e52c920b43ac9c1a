"""``shared.secret_store``: the node's key in the OS keyring, an encrypted file or a plain file.

Checked: a round trip through each store, a wrong or missing passphrase refused with a plain
reason, damaged or tampered files refused, a non-working keyring detected (keyring's fail
backend, a chain of only not-recommended backends, a backend that raises on use) with the
plain explanation, and the run-time copy for the SuperNode being 0600 and removed again.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import keyring.core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keyring.backend import KeyringBackend
from keyrings.alt.file import PlaintextKeyring

from shared.enrollment import generate_keypair
from shared.secret_store import (
    MATERIALIZED_KEY_FILE,
    SERVICE,
    KeyLocation,
    KeyringUnavailable,
    KeyStore,
    PassphraseRequired,
    SecretStoreError,
    WrongPassphrase,
    decrypt_secret,
    delete_node_key,
    discard_materialized_key,
    encrypt_secret,
    keyring_status,
    load_node_key,
    materialize_node_key,
    new_key_id,
    passphrase_problem,
    save_node_key,
)
from tests.keyring_support import use_no_keyring, use_test_keyring

PASSPHRASE = "correct horse battery"  # noqa: S105 - a test passphrase


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _location(tmp_path: Path, store: KeyStore) -> KeyLocation:
    directory = tmp_path / "node" / "enrollment"
    directory.mkdir(parents=True, exist_ok=True)
    key_id = new_key_id() if store is KeyStore.KEYRING else None
    return KeyLocation(store, directory, key_id)


@pytest.fixture
def test_keyring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return use_test_keyring(monkeypatch, tmp_path / "keyring-data")


def test_keyring_round_trip_keeps_nothing_on_disk_in_the_node(
    test_keyring: Any, tmp_path: Path
) -> None:
    pem, _ = generate_keypair()
    location = _location(tmp_path, KeyStore.KEYRING)
    save_node_key(location, pem, None)
    assert list(location.directory.iterdir()) == []
    assert test_keyring.get_password(SERVICE, location.keyring_username) == pem.decode()
    assert load_node_key(location) == pem
    delete_node_key(location)
    assert test_keyring.get_password(SERVICE, location.keyring_username) is None
    with pytest.raises(SecretStoreError, match="has no key for this node"):
        load_node_key(location)


def test_two_enrollments_never_share_a_keyring_entry(test_keyring: Any, tmp_path: Path) -> None:
    first, second = (
        _location(tmp_path / "a", KeyStore.KEYRING),
        _location(tmp_path / "b", KeyStore.KEYRING),
    )
    save_node_key(first, b"first-key", None)
    save_node_key(second, b"second-key", None)
    assert (load_node_key(first), load_node_key(second)) == (b"first-key", b"second-key")


def test_encrypted_file_round_trip_and_wrong_passphrase(tmp_path: Path) -> None:
    pem, _ = generate_keypair()
    location = _location(tmp_path, KeyStore.ENCRYPTED)
    save_node_key(location, pem, PASSPHRASE)
    assert [p.name for p in location.directory.iterdir()] == [location.encrypted_path.name]
    assert _mode(location.encrypted_path) == 0o600
    assert pem not in location.encrypted_path.read_bytes()
    assert b"PRIVATE KEY" not in location.encrypted_path.read_bytes()
    assert load_node_key(location, PASSPHRASE) == pem
    with pytest.raises(WrongPassphrase, match="does not open"):
        load_node_key(location, PASSPHRASE + "!")
    with pytest.raises(PassphraseRequired, match="protected by a passphrase"):
        load_node_key(location, None)
    with pytest.raises(PassphraseRequired):
        save_node_key(location, pem, "")


def test_plain_file_store_is_todays_0600_file(tmp_path: Path) -> None:
    pem, _ = generate_keypair()
    location = _location(tmp_path, KeyStore.FILE)
    save_node_key(location, pem, None)
    assert location.plain_path.read_bytes() == pem
    assert _mode(location.plain_path) == 0o600
    assert load_node_key(location) == pem


def test_tampered_header_or_ciphertext_is_refused() -> None:
    blob = encrypt_secret(b"secret key", PASSPHRASE, scrypt_n=2**10)
    body = json.loads(blob)
    cheaper = {**body, "n": 2**11}  # header fields are authenticated with the ciphertext
    with pytest.raises(WrongPassphrase):
        decrypt_secret(json.dumps(cheaper).encode(), PASSPHRASE)
    flipped = bytearray(body["ciphertext"].encode())
    flipped[5] = ord("A") if flipped[5] != ord("A") else ord("B")
    with pytest.raises(WrongPassphrase):
        decrypt_secret(json.dumps({**body, "ciphertext": flipped.decode()}).encode(), PASSPHRASE)
    for damaged in (b"not json", json.dumps({**body, "n": 2**30}).encode(), b"{}"):
        with pytest.raises(SecretStoreError, match="damaged"):
            decrypt_secret(damaged, PASSPHRASE)


@settings(max_examples=120, deadline=None)
@given(secret=st.binary(max_size=4096), passphrase=st.text(min_size=1, max_size=64))
def test_encryption_round_trips_any_key_and_passphrase(secret: bytes, passphrase: str) -> None:
    """Property: decrypt(encrypt(k, p), p) == k for every key k and non-empty passphrase p, and
    another passphrase never opens it (AES-GCM authenticates, so no wrong key yields bytes)."""
    blob = encrypt_secret(secret, passphrase, scrypt_n=2**10)  # cost is stored in the file
    assert decrypt_secret(blob, passphrase) == secret
    with pytest.raises(WrongPassphrase):
        decrypt_secret(blob, passphrase + "x")


def test_new_passphrases_must_be_long_enough_and_confirmed() -> None:
    assert passphrase_problem("short") is not None
    assert "differ" in str(passphrase_problem(PASSPHRASE, PASSPHRASE + " "))
    assert passphrase_problem(PASSPHRASE, PASSPHRASE) is None


def test_the_fail_backend_is_no_keyring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_no_keyring(monkeypatch)
    status = keyring_status()
    assert not status.available
    assert status.explanation.startswith("No secure password store is available")
    assert "file protected by a passphrase" in status.explanation
    with pytest.raises(KeyringUnavailable, match="No secure password store"):
        save_node_key(_location(tmp_path, KeyStore.KEYRING), b"key", None)


def test_a_chain_of_only_not_recommended_backends_is_no_keyring(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What keyring picks by itself here (keyrings.alt installed, no Secret Service): a chain
    of plain-text and prompt-for-password file backends, which must not count as secure."""
    from keyring.backends.chainer import ChainerBackend

    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no keyringrc.cfg
    monkeypatch.setattr(ChainerBackend, "backends", [PlaintextKeyring()])
    monkeypatch.setattr(keyring.core, "_keyring_backend", ChainerBackend())
    assert not keyring_status().available


class _Locked(KeyringBackend):
    """A backend that looks fine but fails on use, like a locked or vanished Secret Service."""

    priority = 5  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("the collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("the collection is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise RuntimeError("the collection is locked")


def test_a_backend_failing_on_use_is_detected_by_the_probe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(keyring.core, "_keyring_backend", _Locked())
    status = keyring_status()
    assert not status.available
    assert "did not work: the collection is locked" in status.explanation
    with pytest.raises(KeyringUnavailable, match="collection is locked"):
        save_node_key(_location(tmp_path, KeyStore.KEYRING), b"key", None)


def test_the_test_keyring_passes_the_probe(test_keyring: Any) -> None:
    status = keyring_status()
    assert status.available, status.explanation


@pytest.mark.parametrize("store", [KeyStore.KEYRING, KeyStore.ENCRYPTED])
def test_materialized_key_is_0600_under_run_and_removed(
    store: KeyStore, test_keyring: Any, tmp_path: Path
) -> None:
    pem, _ = generate_keypair()
    location = _location(tmp_path, store)
    node_dir = location.directory.parent
    save_node_key(location, pem, PASSPHRASE)
    path = materialize_node_key(node_dir, location, PASSPHRASE)
    assert path == node_dir.absolute() / "run" / MATERIALIZED_KEY_FILE
    assert path.read_bytes() == pem
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    discard_materialized_key(node_dir)
    assert not path.exists()
    discard_materialized_key(node_dir)  # nothing there: nothing happens


def test_materializing_an_encrypted_key_needs_the_right_passphrase(tmp_path: Path) -> None:
    location = _location(tmp_path, KeyStore.ENCRYPTED)
    node_dir = location.directory.parent
    save_node_key(location, b"pem", PASSPHRASE)
    with pytest.raises(PassphraseRequired):
        materialize_node_key(node_dir, location, None)
    with pytest.raises(WrongPassphrase):
        materialize_node_key(node_dir, location, "not the passphrase")
    assert not (node_dir / "run" / MATERIALIZED_KEY_FILE).exists()


def test_a_plain_key_file_is_used_in_place(tmp_path: Path) -> None:
    location = _location(tmp_path, KeyStore.FILE)
    node_dir = location.directory.parent
    with pytest.raises(SecretStoreError, match="missing"):
        materialize_node_key(node_dir, location)
    save_node_key(location, b"pem", None)
    assert materialize_node_key(node_dir, location) == location.plain_path.absolute()
    discard_materialized_key(node_dir)
    assert location.plain_path.exists()  # discarding never touches the stored key
