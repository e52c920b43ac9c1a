"""Node-side enrollment: join a coordinator once with a one-time token and a fresh key pair.

The node makes its own SuperNode key pair (EC P-384, OpenSSH format: what Flower 1.42's
SuperNode authentication loads), sends the public half with the token the coordinator's admin
handed over out of band, and keeps what comes back in ``<node_dir>/enrollment/``:

* ``ca.pem``: the coordinator's CA, pinned from now on (the owner compares its SHA-256
  fingerprint with the one the coordinator's admin reads out),
* ``node.pub``: the SuperNode public key; the private key goes to the store the owner chose
  (``shared.secret_store``: the OS keyring, ``node.key.enc`` encrypted with a passphrase, or
  the plain 0600 ``node.key``),
* ``credentials.json`` (0600): the API address, the node's access and refresh tokens, which
  store holds the key (never the key), and what the coordinator said about the federation
  (retailer id and name, SuperLink address, taxonomy version, CA fingerprint, Flower node id,
  registration state). An enrollment without ``key_store`` predates the choice: a ``node.key``
  file.

The files are written into a temporary directory beside the final one and renamed into place
in one step, so an interrupted enrollment never leaves a half-written ``enrollment/``. An
existing enrollment is never replaced unless asked (``force=True``): its key is what the
SuperLink admits. The key is made before the token is sent, so a spent token never costs a key.

Before enrolling, :func:`fetch_coordinator_ca` lets the owner see the coordinator's CA
fingerprint and confirm it; passing it on as ``expected_fingerprint`` makes sure the enrollment
pins that same CA. This module needs only ``cryptography``, ``httpx`` and ``keyring``: no Qt,
no coordinator code, so a node can enroll with nothing else installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.secret_store import (
    SERVICE,
    KeyLocation,
    KeyStore,
    SecretStoreError,
    delete_node_key,
    new_key_id,
    save_node_key,
    write_private,
)

ENROLLMENT_DIR = "enrollment"
CA_FILE = "ca.pem"
KEY_FILE = "node.key"
PUBLIC_KEY_FILE = "node.pub"
CREDENTIALS_FILE = "credentials.json"
ENROLL_PATH = "/api/v1/enroll"
CA_PATH = "/api/v1/ca"
_API_SUFFIX = "/api/v1"
_REQUIRED = (
    "retailer_id",
    "retailer_name",
    "access_token",
    "refresh_token",
    "access_expires_at",
    "refresh_expires_at",
    "ca_certificate",
    "ca_fingerprint",
)


class EnrollmentError(Exception):
    """Enrollment did not happen; ``reason`` says why in words a shop owner can act on (for a
    refusal it is the coordinator's own reason)."""

    def __init__(self, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


@dataclass(frozen=True)
class NodeEnrollment:
    """A completed enrollment as stored on the node (tokens stay in ``credentials.json``)."""

    directory: Path
    api_url: str
    retailer_id: int
    retailer_name: str
    ca_fingerprint: str
    superlink_address: str | None
    taxonomy_version: str | None
    flower_node_id: int | None
    registration: str
    access_expires_at: str
    refresh_expires_at: str
    enrolled_at: str
    key_store: KeyStore = KeyStore.FILE
    key_id: str | None = None

    @property
    def key_location(self) -> KeyLocation:
        """Where the private key is (see ``shared.secret_store``)."""
        return KeyLocation(self.key_store, self.directory, self.key_id)

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def public_key_path(self) -> Path:
        return self.directory / PUBLIC_KEY_FILE

    @property
    def credentials_path(self) -> Path:
        return self.directory / CREDENTIALS_FILE

    def _key_reference(self) -> str:
        location = self.key_location
        if self.key_store is KeyStore.KEYRING:
            return f"keyring:{SERVICE}/{location.keyring_username}"
        if self.key_store is KeyStore.ENCRYPTED:
            return str(location.encrypted_path)
        return str(location.plain_path)

    def to_json(self) -> dict[str, Any]:
        """What a script may print: everything but the tokens."""
        return {
            "directory": str(self.directory),
            "api_url": self.api_url,
            "retailer_id": self.retailer_id,
            "retailer_name": self.retailer_name,
            "ca_fingerprint": self.ca_fingerprint,
            "superlink_address": self.superlink_address,
            "taxonomy_version": self.taxonomy_version,
            "flower_node_id": self.flower_node_id,
            "registration": self.registration,
            "access_expires_at": self.access_expires_at,
            "refresh_expires_at": self.refresh_expires_at,
            "enrolled_at": self.enrolled_at,
            "key_store": str(self.key_store),
            "files": {
                "ca": str(self.ca_path),
                "private_key": self._key_reference(),
                "public_key": str(self.public_key_path),
                "credentials": str(self.credentials_path),
            },
        }


def enrollment_dir(node_dir: Path) -> Path:
    return Path(node_dir).expanduser() / ENROLLMENT_DIR


def generate_keypair() -> tuple[bytes, str]:
    """A SuperNode key pair: (OpenSSH private key PEM, ``ecdsa-sha2-nistp384 AAAA...`` line)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_line = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    return private_pem, public_line


def certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate (DER), colon-separated upper-case hex: what ``openssl x509
    -fingerprint -sha256`` and the coordinator's ``init`` print, for comparing by eye."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise EnrollmentError(
            f"the coordinator sent a CA certificate that is not valid: {exc}"
        ) from None
    der = cert.public_bytes(serialization.Encoding.DER)
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def normalise_api_url(url: str) -> str:
    """``http(s)://host:port`` without a trailing slash or ``/api/v1``; a bare ``host:port``
    means http. Raises ``ValueError`` for anything else."""
    text = url.strip()
    if not text:
        raise ValueError("give the coordinator's address, e.g. http://coordinator.example:8000")
    if "://" not in text:
        text = f"http://{text}"
    text = text.rstrip("/")
    text = text.removesuffix(_API_SUFFIX)
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{url!r} is not a valid address: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(
            f"{url!r} is not an http(s) address; use e.g. http://coordinator.example:8000"
        )
    if parsed.query or parsed.fragment or parsed.path not in ("", "/"):
        raise ValueError(f"{url!r}: give only the coordinator's address, without a path")
    return text


@dataclass(frozen=True)
class CoordinatorCA:
    """The CA a coordinator presents before enrollment, for the owner to confirm."""

    api_url: str
    certificate_pem: bytes
    fingerprint: str


def fetch_coordinator_ca(
    api_url: str, *, timeout: float = 15, transport: httpx.BaseTransport | None = None
) -> CoordinatorCA:
    """Ask the coordinator for its CA certificate (public; no token is spent) and compute its
    fingerprint here, so what the owner compares is what will be pinned. EnrollmentError when
    the address is wrong or the coordinator cannot be reached or is not one."""
    try:
        base = normalise_api_url(api_url)
    except ValueError as exc:
        raise EnrollmentError(str(exc)) from None
    url = base + CA_PATH
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.get(url)
    except httpx.TimeoutException:
        raise EnrollmentError(
            f"the coordinator at {base} did not answer within {timeout:g} s; check the "
            "address and your network, then try again"
        ) from None
    except httpx.TransportError as exc:
        raise EnrollmentError(_unreachable(base, exc)) from None
    try:
        data = response.json() if response.status_code == 200 else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("ca_certificate"), str):
        raise EnrollmentError(
            f"{base} did not answer like a Retail Intelligence coordinator (HTTP "
            f"{response.status_code} from {url}); check the address the admin gave you",
            status_code=response.status_code,
        )
    pem = data["ca_certificate"].encode("ascii", errors="replace")
    return CoordinatorCA(base, pem, certificate_fingerprint(pem))


def _unreachable(base: str, exc: Exception) -> str:
    return (
        f"cannot reach the coordinator at {base} ({exc or type(exc).__name__}); check the "
        "address, that the coordinator is running and that your network allows it"
    )


def load_enrollment(node_dir: Path) -> NodeEnrollment | None:
    """The node's stored enrollment, or None when it has not enrolled (or the files are
    incomplete, which only a hand edit can cause)."""
    directory = enrollment_dir(node_dir)
    try:
        data = json.loads((directory / CREDENTIALS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return _record(directory, data)
    except (KeyError, TypeError, ValueError):
        return None


def enroll(
    api_url: str,
    token: str,
    node_dir: Path,
    *,
    timeout: float = 30,
    force: bool = False,
    expected_fingerprint: str | None = None,
    key_store: KeyStore | str = KeyStore.FILE,
    passphrase: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> NodeEnrollment:
    """Enroll this node with the coordinator at ``api_url`` using the one-time ``token``.

    Raises ``EnrollmentError`` when the node is already enrolled (unless ``force``), the
    coordinator refuses (its reason: token used, expired or unknown, rate limited, ...), cannot
    be reached, or answers something unusable; nothing is stored then. ``expected_fingerprint``
    (optional) is the CA fingerprint the owner was told: a different CA is refused.
    ``key_store`` says where the private key goes (``passphrase`` encrypts it for
    ``encrypted``); the key is stored before the token is sent, so a store that does not work
    never costs a token. ``transport`` lets tests talk to an in-process app.
    """
    try:
        base = normalise_api_url(api_url)
    except ValueError as exc:
        raise EnrollmentError(str(exc)) from None
    token = token.strip()
    if not token:
        raise EnrollmentError("the enrollment token is empty; paste the token the admin gave you")
    node_dir = Path(node_dir).expanduser()
    final = enrollment_dir(node_dir)
    if final.exists() and not force:
        raise EnrollmentError(
            f"this node is already enrolled ({final}); enrolling again makes a new key and "
            "needs a new token: use --force to replace the enrollment"
        )
    try:
        store = KeyStore(key_store)
    except ValueError:
        raise EnrollmentError(
            f"unknown key store {key_store!r}; use keyring, encrypted or file"
        ) from None
    previous = load_enrollment(node_dir)
    node_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".enrollment-", dir=node_dir))  # 0700
    location = KeyLocation(store, staging, new_key_id() if store is KeyStore.KEYRING else None)
    try:
        private_pem, public_line = generate_keypair()
        try:
            save_node_key(location, private_pem, passphrase)
        except SecretStoreError as exc:
            raise EnrollmentError(exc.reason) from None
        (staging / PUBLIC_KEY_FILE).write_text(public_line + "\n", "ascii")
        payload = _post(base, token, public_line, timeout=timeout, transport=transport)
        record = _store(staging, base, payload, expected_fingerprint, location)
        _swap_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        delete_node_key(location)
        raise
    if previous is not None and previous.key_store is KeyStore.KEYRING:
        delete_node_key(previous.key_location)  # the replaced key is never used again
    return replace(record, directory=final)


# -- internals --------------------------------------------------------------------------------


def _post(
    base: str,
    token: str,
    public_line: str,
    *,
    timeout: float,
    transport: httpx.BaseTransport | None,
) -> dict[str, Any]:
    url = base + ENROLL_PATH
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(url, json={"token": token, "public_key": public_line})
    except httpx.TimeoutException:
        raise EnrollmentError(
            f"the coordinator at {base} did not answer within {timeout:g} s; check the "
            "address and your network, then try again (the token is still unused)"
        ) from None
    except httpx.TransportError as exc:
        raise EnrollmentError(_unreachable(base, exc)) from None
    if response.status_code == 201:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or any(key not in data for key in _REQUIRED):
            raise EnrollmentError(
                f"{url} answered with something that is not an enrollment; is {base} a "
                "Retail Intelligence coordinator?"
            )
        return data
    reason = _detail(response)
    if response.status_code == 429:
        raise EnrollmentError(
            reason or "too many enrollment attempts; wait a minute and try again",
            status_code=429,
        )
    if 400 <= response.status_code < 500:
        if response.status_code == 404 and reason in (None, "Not Found"):
            reason = f"{url} does not exist; is {base} a Retail Intelligence coordinator?"
        raise EnrollmentError(
            reason or f"the coordinator refused (HTTP {response.status_code})",
            status_code=response.status_code,
        )
    raise EnrollmentError(
        f"the coordinator failed to enroll this node (HTTP {response.status_code}"
        f"{': ' + reason if reason else ''}); try again later or tell its admin",
        status_code=response.status_code,
    )


def _detail(response: httpx.Response) -> str | None:
    """FastAPI's ``{"detail": ...}`` as one line (a list of validation errors is joined)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = [
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        ]
        return "; ".join(parts) or None
    return None


def _store(
    staging: Path,
    base: str,
    data: dict[str, Any],
    expected_fingerprint: str | None,
    location: KeyLocation,
) -> NodeEnrollment:
    ca_pem = str(data["ca_certificate"]).encode("ascii", errors="replace")
    computed = certificate_fingerprint(ca_pem)
    announced = _fingerprint_text(str(data["ca_fingerprint"]))
    if announced != computed:
        raise EnrollmentError(
            "the coordinator's CA certificate does not match the fingerprint it announced; "
            "nothing was stored: tell the coordinator's admin"
        )
    if expected_fingerprint is not None and _fingerprint_text(expected_fingerprint) != computed:
        raise EnrollmentError(
            f"the coordinator's CA fingerprint is {computed}, not the one you were given; "
            "nothing was stored: do not trust this coordinator until its admin explains"
        )
    (staging / CA_FILE).write_bytes(ca_pem)
    credentials = {
        "api_url": base,
        "access_token": str(data["access_token"]),
        "refresh_token": str(data["refresh_token"]),
        "access_expires_at": str(data["access_expires_at"]),
        "refresh_expires_at": str(data["refresh_expires_at"]),
        "retailer_id": int(data["retailer_id"]),
        "retailer_name": str(data["retailer_name"]),
        "superlink_address": data.get("superlink_address"),
        "taxonomy_version": data.get("taxonomy_version"),
        "ca_fingerprint": computed,
        "flower_node_id": data.get("flower_node_id"),
        "registration": str(data.get("registration") or "unknown"),
        "enrolled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "key_store": str(location.store),
        "key_id": location.key_id,
    }
    write_private(
        staging / CREDENTIALS_FILE, (json.dumps(credentials, indent=2) + "\n").encode("utf-8")
    )
    return _record(staging, credentials)


def _record(directory: Path, data: dict[str, Any]) -> NodeEnrollment:
    node_id = data.get("flower_node_id")
    return NodeEnrollment(
        directory=directory,
        api_url=str(data["api_url"]),
        retailer_id=int(data["retailer_id"]),
        retailer_name=str(data["retailer_name"]),
        ca_fingerprint=str(data["ca_fingerprint"]),
        superlink_address=data.get("superlink_address"),
        taxonomy_version=data.get("taxonomy_version"),
        flower_node_id=None if node_id is None else int(node_id),
        registration=str(data.get("registration", "unknown")),
        access_expires_at=str(data["access_expires_at"]),
        refresh_expires_at=str(data["refresh_expires_at"]),
        enrolled_at=str(data.get("enrolled_at", "")),
        # Enrollments from before the choice have no key_store: their key is node.key.
        key_store=KeyStore(str(data.get("key_store") or KeyStore.FILE)),
        key_id=None if data.get("key_id") is None else str(data["key_id"]),
    )


def _fingerprint_text(text: str) -> str:
    """Fingerprints compare without case, colons or spaces (``aa bb`` == ``AA:BB``)."""
    clean = "".join(ch for ch in text.upper() if ch in "0123456789ABCDEF")
    return ":".join(clean[i : i + 2] for i in range(0, len(clean), 2))


def _swap_into_place(staging: Path, final: Path) -> None:
    """Rename the complete staging directory to ``final``; an old enrollment (``force``) is
    moved aside first and deleted only after the new one is in place."""
    old: Path | None = None
    if final.exists():
        old = final.with_name(f".{final.name}-replaced-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    try:
        staging.rename(final)
    except OSError:
        if old is not None:
            with contextlib.suppress(OSError):
                old.rename(final)
        raise
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
