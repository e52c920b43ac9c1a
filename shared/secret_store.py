"""Where the node's SuperNode private key lives, and how it reaches the SuperNode.

Why: the key is the node's identity in the federation (the SuperLink admits whoever holds
it), so it should not sit in a plain file when the computer has a better place. Three stores:

* ``keyring``: the operating system's password store through the ``keyring`` library
  (Keychain, Windows Credential Locker, Secret Service / KWallet), under the service
  ``retail-intelligence`` and a per-enrollment user name, so several node directories on one
  computer never share an entry;
* ``encrypted``: a file in the enrollment directory encrypted with a key derived from the
  owner's passphrase (scrypt, then AES-256-GCM; the salt and cost parameters are stored in the
  file and authenticated with it), for computers without a working password store;
* ``file``: the plain 0600 file of the first releases; an explicit choice for headless
  servers and the demo, and what every enrollment made before this module reads as.

Flower's SuperNode only loads its key from a path, so while the node runs the key is written
as a 0600 file under ``NODE_DIR/run/`` (:func:`materialize_node_key`) and removed when it
stops (:func:`discard_materialized_key`). No Qt and no coordinator code here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import platform
import secrets
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SERVICE = "retail-intelligence"
PLAIN_KEY_FILE = "node.key"
ENCRYPTED_KEY_FILE = "node.key.enc"
RUN_DIR = "run"
MATERIALIZED_KEY_FILE = "supernode.key"
PASSPHRASE_MIN_LENGTH = 8

_FORMAT = "retail-intelligence-encrypted-secret"
_VERSION = 1
# scrypt cost: 2**15 takes well under a second on a shop's PC and is above the interactive
# minimum cryptography's documentation gives (2**14). Files may say otherwise within limits.
DEFAULT_SCRYPT_N = 2**15
_SCRYPT_N_RANGE = (2**10, 2**20)  # reading: refuse absurd costs (a crafted file could hang us)
_SCRYPT_R, _SCRYPT_P = 8, 1
_SALT_BYTES, _NONCE_BYTES = 16, 12

NO_KEYRING = (
    "No secure password store is available on this computer{why}. You can keep the key in a "
    "file protected by a passphrase instead."
)


class KeyStore(StrEnum):
    """Where an enrollment keeps its private key (recorded in ``credentials.json``)."""

    KEYRING = "keyring"
    ENCRYPTED = "encrypted"
    FILE = "file"


class SecretStoreError(Exception):
    """The key cannot be stored or read; ``reason`` says why in the owner's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PassphraseRequired(SecretStoreError):
    """The key is encrypted and no passphrase was given."""


class WrongPassphrase(SecretStoreError):
    """The passphrase does not open the encrypted key (or the file was altered)."""


class KeyringUnavailable(SecretStoreError):
    """The OS password store does not work here; the reason is :data:`NO_KEYRING`-style."""


@dataclass(frozen=True)
class KeyLocation:
    """Which store holds one enrollment's key: ``directory`` is ``NODE_DIR/enrollment``."""

    store: KeyStore
    directory: Path
    key_id: str | None = None  # the keyring user name's suffix (keyring store only)

    @property
    def plain_path(self) -> Path:
        return self.directory / PLAIN_KEY_FILE

    @property
    def encrypted_path(self) -> Path:
        return self.directory / ENCRYPTED_KEY_FILE

    @property
    def keyring_username(self) -> str:
        if not self.key_id:
            raise SecretStoreError("this enrollment names no keyring entry; enroll again")
        return f"node-key/{self.key_id}"

    def describe(self) -> str:
        """One line for the owner: where the key is."""
        if self.store is KeyStore.KEYRING:
            return f"the computer's password store ({SERVICE}, {self.keyring_username})"
        if self.store is KeyStore.ENCRYPTED:
            return f"{self.encrypted_path} (encrypted with your passphrase)"
        return f"{self.plain_path} (readable only by you)"


def new_key_id() -> str:
    """A random id per enrollment: the keyring entry follows the enrollment, not the path."""
    return secrets.token_hex(12)


# -- the OS keyring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyringStatus:
    """Whether the OS password store works; ``explanation`` is for the owner."""

    available: bool
    backend: str
    explanation: str


def keyring_status(*, probe: bool = True) -> KeyringStatus:
    """Is there a password store we can trust with the key? With ``probe`` an entry is
    written, read back and deleted, because a backend that looks fine can still fail (a locked
    or absent Secret Service is only noticed on use)."""
    try:
        backend = _usable_backend()
    except KeyringUnavailable as exc:
        return KeyringStatus(False, "none", exc.reason)
    name = _backend_name(backend)
    if probe:
        username = f"probe/{secrets.token_hex(8)}"
        value = secrets.token_hex(16)
        try:
            backend.set_password(SERVICE, username, value)
            try:
                read = backend.get_password(SERVICE, username)
            finally:
                backend.delete_password(SERVICE, username)
        except Exception as exc:  # any backend failure means "not usable": say which
            return KeyringStatus(False, name, _failed(name, exc))
        if read != value:
            return KeyringStatus(
                False, name, _failed(name, RuntimeError("it gave back something else"))
            )
    return KeyringStatus(True, name, f"The key is kept in this computer's password store ({name}).")


def _usable_backend() -> Any:
    """The backend to use, or KeyringUnavailable. Not usable: the fail/null backends, and a
    chain of only "not recommended" backends (priority < 1, e.g. plain-text file keyrings),
    unless one was chosen on purpose (PYTHON_KEYRING_BACKEND or keyringrc.cfg)."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null
        from keyring.util import platform_
    except Exception as exc:  # a broken install must not stop enrollment with a file store
        raise KeyringUnavailable(NO_KEYRING.format(why=f" (keyring cannot load: {exc})")) from None
    try:
        backend = keyring.get_keyring()
    except Exception as exc:
        raise KeyringUnavailable(NO_KEYRING.format(why=f" ({exc})")) from None
    if isinstance(backend, chainer.ChainerBackend):
        recommended = [b for b in backend.backends if _priority(b) >= 1]
        if not recommended:
            raise KeyringUnavailable(NO_KEYRING.format(why=_missing_service()))
        return recommended[0]
    if isinstance(backend, fail.Keyring | null.Keyring):
        raise KeyringUnavailable(NO_KEYRING.format(why=_missing_service()))
    chosen = (
        bool(os.environ.get("PYTHON_KEYRING_BACKEND"))
        or (Path(platform_.config_root()) / "keyringrc.cfg").is_file()
    )
    if _priority(backend) < 1 and not chosen:
        raise KeyringUnavailable(NO_KEYRING.format(why=_missing_service()))
    return backend


def _priority(backend: Any) -> float:
    try:
        return float(backend.priority)
    except Exception:  # keyring raises from priority when a backend is not viable
        return 0.0


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return str(getattr(backend, "name", "") or f"{cls.__module__}.{cls.__qualname__}")


def _missing_service() -> str:
    if platform.system() == "Linux":
        return " (no Secret Service such as GNOME Keyring or KWallet is running)"
    return ""


def _failed(name: str, exc: Exception) -> str:
    detail = str(exc).strip() or type(exc).__name__
    return (
        f"This computer's password store ({name}) did not work: {detail}. You can keep the "
        "key in a file protected by a passphrase instead."
    )


# -- passphrase encryption --------------------------------------------------------------------


def passphrase_problem(passphrase: str, confirmation: str | None = None) -> str | None:
    """Why a new passphrase is not acceptable, or None. Long enough to resist guessing from a
    stolen file for a while; the confirmation catches typos (a forgotten key means enrolling
    again)."""
    if len(passphrase) < PASSPHRASE_MIN_LENGTH:
        return f"Choose a passphrase of at least {PASSPHRASE_MIN_LENGTH} characters."
    if confirmation is not None and confirmation != passphrase:
        return "The two passphrases differ; type the same passphrase twice."
    return None


def _derive(passphrase: str, salt: bytes, n: int) -> bytes:
    data = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return Scrypt(salt=salt, length=32, n=n, r=_SCRYPT_R, p=_SCRYPT_P).derive(data)


def _header(salt: bytes, n: int) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "kdf": "scrypt",
        "n": n,
        "r": _SCRYPT_R,
        "p": _SCRYPT_P,
        "salt": base64.b64encode(salt).decode("ascii"),
        "cipher": "AES-256-GCM",
    }


def _aad(header: dict[str, Any]) -> bytes:
    """The header is authenticated too: lowering the cost or swapping the salt is detected."""
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encrypt_secret(secret: bytes, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> bytes:
    """The file content protecting ``secret`` with ``passphrase`` (JSON, ASCII)."""
    if not passphrase:
        raise PassphraseRequired("a passphrase is needed to encrypt the key")
    salt = os.urandom(_SALT_BYTES)
    nonce = os.urandom(_NONCE_BYTES)
    header = _header(salt, scrypt_n)
    sealed = AESGCM(_derive(passphrase, salt, scrypt_n)).encrypt(nonce, secret, _aad(header))
    body = {
        **header,
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ciphertext": base64.b64encode(sealed).decode("ascii"),
    }
    return (json.dumps(body, indent=2) + "\n").encode("ascii")


def decrypt_secret(blob: bytes, passphrase: str | None, *, source: str = "the key file") -> bytes:
    """The secret in ``blob``; PassphraseRequired / WrongPassphrase / SecretStoreError."""
    if not passphrase:
        raise PassphraseRequired(
            f"the node's key in {source} is protected by a passphrase: enter it (or set "
            "RETAIL_NODE_PASSPHRASE)"
        )
    try:
        body = json.loads(blob.decode("utf-8"))
        if body.get("format") != _FORMAT or body.get("version") != _VERSION:
            raise ValueError("not an encrypted key of this app")
        n = int(body["n"])
        if not (_SCRYPT_N_RANGE[0] <= n <= _SCRYPT_N_RANGE[1]) or n & (n - 1):
            raise ValueError(f"unacceptable scrypt cost {n}")
        if (body.get("r"), body.get("p"), body.get("kdf")) != (_SCRYPT_R, _SCRYPT_P, "scrypt"):
            raise ValueError("unknown key derivation parameters")
        salt = base64.b64decode(body["salt"], validate=True)
        nonce = base64.b64decode(body["nonce"], validate=True)
        sealed = base64.b64decode(body["ciphertext"], validate=True)
        header = _header(salt, n)
        if body.get("cipher") != header["cipher"] or len(nonce) != _NONCE_BYTES:
            raise ValueError("unknown cipher")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise SecretStoreError(
            f"{source} is damaged ({exc}); restore it from a backup or enroll again"
        ) from None
    try:
        return AESGCM(_derive(passphrase, salt, n)).decrypt(nonce, sealed, _aad(header))
    except InvalidTag:
        raise WrongPassphrase(
            f"the passphrase does not open the node's key in {source}; check it and try again"
        ) from None


# -- storing and reading the key --------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Created 0600 whatever the umask, so a secret is never briefly readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def save_node_key(location: KeyLocation, private_pem: bytes, passphrase: str | None) -> None:
    """Put the key in ``location``'s store (the directory must exist)."""
    if location.store is KeyStore.FILE:
        write_private(location.plain_path, private_pem)
    elif location.store is KeyStore.ENCRYPTED:
        if not passphrase:
            raise PassphraseRequired("choose a passphrase to protect the node's key")
        write_private(location.encrypted_path, encrypt_secret(private_pem, passphrase))
    else:
        backend = _usable_backend()
        try:
            backend.set_password(SERVICE, location.keyring_username, private_pem.decode("ascii"))
        except Exception as exc:
            raise KeyringUnavailable(_failed(_backend_name(backend), exc)) from None


def load_node_key(location: KeyLocation, passphrase: str | None = None) -> bytes:
    """The key's PEM bytes from its store."""
    if location.store is KeyStore.FILE:
        try:
            return location.plain_path.read_bytes()
        except OSError as exc:
            raise SecretStoreError(
                f"cannot read the node's key {location.plain_path} ({exc.strerror}); "
                "enroll again if it was deleted"
            ) from None
    if location.store is KeyStore.ENCRYPTED:
        try:
            blob = location.encrypted_path.read_bytes()
        except OSError as exc:
            raise SecretStoreError(
                f"cannot read the node's encrypted key {location.encrypted_path} "
                f"({exc.strerror}); enroll again if it was deleted"
            ) from None
        return decrypt_secret(blob, passphrase, source=str(location.encrypted_path))
    backend = _usable_backend()
    try:
        value = backend.get_password(SERVICE, location.keyring_username)
    except Exception as exc:
        raise KeyringUnavailable(_failed(_backend_name(backend), exc)) from None
    if value is None:
        raise SecretStoreError(
            f"the computer's password store has no key for this node ({SERVICE}, "
            f"{location.keyring_username}); enroll again with a new token"
        )
    return str(value).encode("ascii")


def delete_node_key(location: KeyLocation) -> None:
    """Remove the key from its store; best effort (used when an enrollment is replaced or
    abandoned, where a leftover must not stop the owner)."""
    if location.store is KeyStore.KEYRING:
        # Nothing there, or no store: then there is nothing to delete either.
        with contextlib.suppress(Exception):
            _usable_backend().delete_password(SERVICE, location.keyring_username)
    elif location.store is KeyStore.ENCRYPTED:
        location.encrypted_path.unlink(missing_ok=True)
    else:
        location.plain_path.unlink(missing_ok=True)


def materialized_key_path(node_dir: Path) -> Path:
    return Path(node_dir).expanduser().absolute() / RUN_DIR / MATERIALIZED_KEY_FILE


def materialize_node_key(
    node_dir: Path, location: KeyLocation, passphrase: str | None = None
) -> Path:
    """A path the SuperNode can load the key from while the node runs.

    A plain-file key is already such a path. Otherwise the key is read from its store (the
    passphrase opens an encrypted one) and written 0600 to ``NODE_DIR/run/``; call
    :func:`discard_materialized_key` when the node stops."""
    if location.store is KeyStore.FILE:
        if not location.plain_path.is_file():
            raise SecretStoreError(f"the node's key {location.plain_path} is missing; enroll again")
        return location.plain_path.absolute()
    pem = load_node_key(location, passphrase)
    path = materialized_key_path(node_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    write_private(path, pem)
    return path


def discard_materialized_key(node_dir: Path) -> None:
    """Remove the run-time copy of the key (nothing happens when there is none)."""
    materialized_key_path(node_dir).unlink(missing_ok=True)
