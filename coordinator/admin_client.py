"""The admin CLI's side of the API: where the daemon is, the admin credential, HTTP calls.

The admin CLI talks to the running daemon over its HTTP API (never to the database behind its
back), so every admin action goes through the same checks and audit trail as a script's would.
It finds the daemon through ``<data dir>/run/endpoints.json`` (written by ``serve`` once the
API answers, removed when it stops) and authenticates with ``<data dir>/admin-credential.json``
(0600, written by ``init``). Access tokens are short-lived: when one has expired (or is about
to) the client exchanges the refresh token for a new pair and rewrites the file, under a file
lock so two CLI invocations never spend the same refresh token (refresh tokens rotate: a spent
one stops working).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from coordinator.config import CONFIG_FILE

CREDENTIAL_FILE = "admin-credential.json"
RUN_DIR = "run"
ENDPOINTS_FILE = "endpoints.json"
API_PREFIX = "/api/v1"
REFRESH_MARGIN = timedelta(seconds=60)  # refresh a token this close to expiry before using it
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")


class AdminClientError(Exception):
    """An admin command cannot be done; the message says what to do."""


class DaemonNotRunning(AdminClientError):
    """No daemon answers for this data directory."""


class CredentialError(AdminClientError):
    """The stored admin credential is missing, unreadable or no longer accepted."""


class ApiError(AdminClientError):
    """The API answered with an error status; ``detail`` is its explanation."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def parse_duration(text: str) -> int:
    """Seconds in ``7d``, ``12h``, ``30m``, ``90s``, ``1d12h`` or a plain number of seconds.

    Raises ``ValueError`` for anything else, or for zero.
    """
    clean = text.strip().lower().replace(" ", "")
    if not clean or _DURATION.sub("", clean):
        raise ValueError(
            f"{text!r} is not a duration; use a number with s, m, h, d or w, e.g. 7d or 12h"
        )
    total = sum(int(n) * _DURATION_UNITS[unit or "s"] for n, unit in _DURATION.findall(clean))
    if total <= 0:
        raise ValueError(f"{text!r}: the duration must be longer than zero")
    return total


def not_running_message(data_dir: Path, why: str = "") -> str:
    reason = f" ({why})" if why else ""
    return (
        f"the coordinator daemon for {data_dir} is not running{reason}; start it with "
        f"`retail-coordinator serve --data-dir {data_dir}`"
    )


# -- the daemon's endpoints -------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """Where a running daemon serves (``run/endpoints.json``)."""

    api_url: str
    superlink_address: str
    pid: int

    @staticmethod
    def path(data_dir: Path) -> Path:
        return Path(data_dir) / RUN_DIR / ENDPOINTS_FILE

    def write(self, data_dir: Path) -> Path:
        """Atomically, so a reader never sees half a file."""
        path = self.path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", "utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, data_dir: Path) -> Endpoints | None:
        """The daemon's endpoints, or None when no daemon announced itself."""
        try:
            data = json.loads(cls.path(data_dir).read_text("utf-8"))
            return cls(str(data["api_url"]), str(data["superlink_address"]), int(data["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def process_alive(pid: int) -> bool:
    """True when a process with this id exists (and is not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text("utf-8", errors="replace")
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat[stat.rfind(")") + 2 :].split()[:1] not in (["Z"], ["X"])


# -- the admin credential ---------------------------------------------------------------------


@dataclass(frozen=True)
class AdminCredential:
    """An admin token pair as ``init`` stored it (0600 JSON)."""

    access_token: str
    refresh_token: str
    access_expires_at: str
    refresh_expires_at: str
    name: str = "admin"

    @staticmethod
    def path(data_dir: Path) -> Path:
        return Path(data_dir) / CREDENTIAL_FILE

    def access_expires(self) -> datetime:
        return _parse_time(self.access_expires_at)

    def refresh_expires(self) -> datetime:
        return _parse_time(self.refresh_expires_at)

    def write(self, data_dir: Path) -> Path:
        """Atomically and 0600 from the first byte: it holds secrets."""
        path = self.path(data_dir)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (json.dumps(asdict(self), indent=2) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, data_dir: Path) -> AdminCredential:
        path = cls.path(data_dir)
        try:
            data = json.loads(path.read_text("utf-8"))
            credential = cls(
                access_token=str(data["access_token"]),
                refresh_token=str(data["refresh_token"]),
                access_expires_at=str(data["access_expires_at"]),
                refresh_expires_at=str(data["refresh_expires_at"]),
                name=str(data.get("name", "admin")),
            )
            credential.access_expires()
            credential.refresh_expires()
        except FileNotFoundError:
            raise CredentialError(
                f"{path} not found: this data directory has no admin credential; run "
                f"`retail-coordinator init --data-dir {data_dir}` (or `retail-coordinator "
                f"credential issue --data-dir {data_dir}` for an existing coordinator)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CredentialError(
                f"{path} cannot be read ({exc}); issue a new one with `retail-coordinator "
                f"credential issue --data-dir {data_dir}`"
            ) from None
        return credential

    @classmethod
    def from_api(cls, data: Mapping[str, Any], name: str = "admin") -> AdminCredential:
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            access_expires_at=_time_text(data["access_expires_at"]),
            refresh_expires_at=_time_text(data["refresh_expires_at"]),
            name=name,
        )


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _time_text(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


@contextlib.contextmanager
def _credential_lock(data_dir: Path) -> Iterator[None]:
    """An exclusive lock beside the credential file (advisory, between CLI invocations)."""
    lock_path = Path(data_dir) / f".{CREDENTIAL_FILE}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# -- the client -------------------------------------------------------------------------------


class AdminClient:
    """Authenticated calls to the daemon of one data directory.

    ``base_url`` and ``transport`` are for tests (an in-process app); normally the URL comes
    from ``run/endpoints.json``. Raises ``DaemonNotRunning``, ``CredentialError`` or
    ``ApiError`` (all ``AdminClientError``) with a message that says what to do.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self._base_url = base_url
        self._transport = transport
        self._timeout = timeout
        self._client: httpx.Client | None = None

    # -- plumbing -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            endpoints = Endpoints.read(self.data_dir)
            if endpoints is None and not (self.data_dir / CONFIG_FILE).is_file():
                raise DaemonNotRunning(
                    f"{self.data_dir} holds no coordinator ({CONFIG_FILE} is missing); create "
                    f"one with `retail-coordinator init --data-dir {self.data_dir}`, then start "
                    f"it with `retail-coordinator serve --data-dir {self.data_dir}`"
                )
            if endpoints is None:
                raise DaemonNotRunning(not_running_message(self.data_dir))
            if not process_alive(endpoints.pid):
                raise DaemonNotRunning(
                    not_running_message(self.data_dir, f"process {endpoints.pid} is gone")
                )
            self._base_url = endpoints.api_url.rstrip("/")
        return self._base_url

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url, transport=self._transport, timeout=self._timeout
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        token: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return self._http().request(
                method, API_PREFIX + path, json=json_body, headers=headers, params=params
            )
        except httpx.TimeoutException:
            raise AdminClientError(
                f"the coordinator daemon at {self.base_url} did not answer within "
                f"{self._timeout:g} s; it may be overloaded (see its log)"
            ) from None
        except httpx.TransportError as exc:
            raise DaemonNotRunning(
                not_running_message(self.data_dir, f"{self.base_url}: {exc or 'no connection'}")
            ) from None

    def _credential(self, *, force_refresh: bool = False) -> AdminCredential:
        credential = AdminCredential.read(self.data_dir)
        if not force_refresh and credential.access_expires() - REFRESH_MARGIN > _now():
            return credential
        with _credential_lock(self.data_dir):
            latest = AdminCredential.read(self.data_dir)  # another CLI may have refreshed
            if latest.access_token != credential.access_token and (
                latest.access_expires() - REFRESH_MARGIN > _now()
            ):
                return latest
            return self._refresh(latest)

    def _refresh(self, credential: AdminCredential) -> AdminCredential:
        if credential.refresh_expires() <= _now():
            raise CredentialError(
                f"the admin credential in {AdminCredential.path(self.data_dir)} expired on "
                f"{credential.refresh_expires_at}; issue a new one with `retail-coordinator "
                f"credential issue --data-dir {self.data_dir}`"
            )
        response = self._send(
            "POST", "/auth/refresh", json_body={"refresh_token": credential.refresh_token}
        )
        if response.status_code != 200:
            raise CredentialError(
                f"the coordinator refused to renew the admin credential "
                f"({_detail(response)}); issue a new one with `retail-coordinator credential "
                f"issue --data-dir {self.data_dir}`"
            )
        try:
            renewed = AdminCredential.from_api(response.json(), credential.name)
        except (ValueError, KeyError, TypeError) as exc:
            raise AdminClientError(f"the coordinator's refresh answer is unusable: {exc}") from None
        renewed.write(self.data_dir)
        return renewed

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> Any:
        """One authenticated API call; returns the decoded JSON body. A 401 (token expired or
        revoked early) is answered by one refresh and a retry."""
        _ = self.base_url  # is the daemon there at all? (says so before asking for a credential)
        credential = self._credential()
        response = self._send(
            method, path, json_body=json_body, token=credential.access_token, params=params
        )
        if response.status_code == 401:
            credential = self._credential(force_refresh=True)
            response = self._send(
                method, path, json_body=json_body, token=credential.access_token, params=params
            )
        if response.status_code not in expect:
            raise ApiError(response.status_code, _detail(response))
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code, f"{path} answered with something that is not JSON"
            ) from None

    # -- the admin's operations -----------------------------------------------------------

    def create_token(self, retailer: str, expires_in_seconds: int) -> dict[str, Any]:
        body = {"retailer": retailer, "expires_in_seconds": expires_in_seconds}
        return dict(self.call("POST", "/tokens", json_body=body))

    def retailers(self) -> Any:
        return self.call("GET", "/retailers")

    def start_campaign(self, rounds: int, epsilon: float, tasks: list[str]) -> dict[str, Any]:
        body = {"rounds": rounds, "epsilon": epsilon, "tasks": tasks}
        return dict(self.call("POST", "/campaigns", json_body=body))

    def campaigns(self) -> Any:
        return self.call("GET", "/campaigns")

    def status(self) -> dict[str, Any]:
        return dict(self.call("GET", "/status"))

    def audit_verify(self) -> dict[str, Any]:
        return dict(self.call("GET", "/audit/verify"))


def _now() -> datetime:
    return datetime.now(UTC)


def _detail(response: httpx.Response) -> str:
    """The API's ``{"detail": ...}`` as one line, else the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()
