"""Enrollment: how a retailer's node joins the federation, once, with its own key.

An admin creates a single-use, expiring enrollment token for a named retailer and hands it
over out of band. The retailer's app sends the token with its node's public key (the key the
Flower SuperNode authenticates with; the private half stays in the OS keyring). Redeeming the
token registers the retailer, claims the token and issues the node's first API credential in
one transaction, so a token can never be redeemed twice, even by two concurrent requests.
Tokens are stored as SHA-256 only; refusals are audited without the token.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_ssh_public_key,
)
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from coordinator.audit import AuditLog
from coordinator.auth import CredentialService, Role, token_hash
from coordinator.db import schema as t
from coordinator.db.database import Database, NotFoundError, affected_rows
from coordinator.db.types import Clock, as_utc, utc_now

TOKEN_PREFIX = "rip_e_"  # noqa: S105 - a public prefix, not a secret
MAX_TOKEN_TTL = timedelta(days=30)
MAX_NAME_LENGTH = 100
MAX_KEY_LENGTH = 4096
FLOWER_ID_LIMIT = 2**64  # Flower node and run ids are unsigned 64-bit numbers
ACCEPTED_KEY_TYPES = {
    "secp256r1": "ecdsa-sha2-nistp256",
    "secp384r1": "ecdsa-sha2-nistp384",
    "secp521r1": "ecdsa-sha2-nistp521",
}


class EnrollmentRefused(Exception):
    """An enrollment attempt was refused; ``reason`` is safe to show to the retailer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Enrollment:
    """What a successfully enrolled node receives (shown once)."""

    retailer_id: int
    retailer_name: str
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    credential_id: int


@dataclass(frozen=True)
class RetailerRecord:
    """An enrolled retailer as stored."""

    id: int
    name: str
    node_public_key: str
    flower_node_id: int | None
    status: str
    created_at: datetime

    @property
    def key_fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -lf`` prints it, to compare keys by eye."""
        return key_fingerprint(self.node_public_key)


def key_fingerprint(openssh_key: str) -> str:
    """The OpenSSH SHA-256 fingerprint of a public key line."""
    blob = base64.b64decode(openssh_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def normalise_node_key(text: str) -> str:
    """The node's public key as ``<type> <base64>`` (comment dropped), or ``EnrollmentRefused``.

    Only ECDSA keys on NIST P-256/384/521 in OpenSSH format are accepted: that is what Flower's
    SuperNode authentication uses. Two spellings of one key normalise to the same text, so a
    key cannot be registered twice under different comments.
    """
    if not isinstance(text, str) or not text.strip():
        raise EnrollmentRefused("no node public key was sent")
    stripped = text.strip()
    if len(stripped) > MAX_KEY_LENGTH or "\n" in stripped or "\r" in stripped:
        raise EnrollmentRefused("the node public key must be a single OpenSSH public key line")
    try:
        key = load_ssh_public_key(stripped.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError):
        raise EnrollmentRefused(
            "the node public key is not a valid OpenSSH public key "
            "(expected a line starting with ecdsa-sha2-nistp256)"
        ) from None
    except Exception:  # the parser raises UnsupportedAlgorithm for unknown key types
        raise EnrollmentRefused(
            "the node public key has an unsupported type; use an ECDSA P-256, P-384 or P-521 key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ACCEPTED_KEY_TYPES:
        raise EnrollmentRefused(
            "the node public key must be an ECDSA key on NIST P-256, P-384 or P-521 "
            "(ecdsa-sha2-nistp256/384/521), as Flower's node authentication requires"
        )
    normal = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode("ascii")
    if normal.split()[0] != stripped.split()[0]:
        raise EnrollmentRefused("the node public key's type name does not match its contents")
    return normal


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError("the retailer name must be text")
    clean = " ".join(name.split())
    if not clean:
        raise ValueError("the retailer name must not be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise ValueError(f"the retailer name is longer than {MAX_NAME_LENGTH} characters")
    if not clean.isprintable():
        raise ValueError("the retailer name must not contain control characters")
    return clean


class EnrollmentService:
    """Creates enrollment tokens, redeems them, and keeps the register of retailers."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        credentials: CredentialService,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._audit = audit
        self._credentials = credentials
        self._clock = clock

    def _now(self) -> datetime:
        return as_utc(self._clock(), what="the enrollment clock")

    # -- tokens ----------------------------------------------------------------------------

    def create_token(
        self, retailer_name: str, ttl: timedelta, *, actor: str
    ) -> tuple[str, datetime]:
        """A new single-use enrollment token for ``retailer_name`` and when it expires.

        The token is returned once and stored only as its SHA-256. Raises ``ValueError`` for a
        bad name, a lifetime outside (0, 30 days], or a name that is already enrolled.
        """
        name = _check_name(retailer_name)
        if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
            raise ValueError(
                "an enrollment token must live more than 0 seconds and at most 30 days"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._now()
        expires = now + ttl
        with self._db.session() as session:
            if session.scalar(select(t.Retailer.id).where(t.Retailer.name == name)) is not None:
                raise ValueError(f"a retailer named {name!r} is already enrolled")
            token_id = session.execute(
                insert(t.EnrollmentToken)
                .values(
                    token_hash=token_hash(token),
                    retailer_name=name,
                    created_at=now,
                    expires_at=expires,
                )
                .returning(t.EnrollmentToken.id)
            ).scalar_one()
            self._audit.append_in(
                session,
                actor,
                "enrollment.token_created",
                f"enrollment-token:{token_id}",
                {"retailer_name": name, "expires_at": expires.isoformat()},
            )
        return token, expires

    # -- redeeming -------------------------------------------------------------------------

    def enroll(self, token: str, node_public_key: str, *, source: str) -> Enrollment:
        """Register the retailer the token was made for, with ``node_public_key``.

        ``source`` names where the request came from (client address) for the audit log.
        Raises ``EnrollmentRefused`` (audited, without the token) when the token is unknown,
        already used or expired, or the key is not an accepted ECDSA key or already registered.
        """
        source = str(source)[:150] or "unknown"
        try:
            return self._enroll(token, node_public_key, source)
        except EnrollmentRefused as refused:
            token_id = self._token_id(token)
            self._audit.append(
                f"node@{source}",
                "enrollment.refused",
                f"enrollment-token:{token_id}" if token_id is not None else "enrollment",
                {"reason": refused.reason, "source": source},
            )
            raise

    def _enroll(self, token: str, node_public_key: str, source: str) -> Enrollment:
        key = normalise_node_key(node_public_key)
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise EnrollmentRefused("unknown enrollment token; ask the coordinator for a new one")
        digest = token_hash(token)
        now = self._now()
        try:
            with self._db.session() as session:
                row = session.execute(
                    select(t.EnrollmentToken)
                    .where(t.EnrollmentToken.token_hash == digest)
                    .with_for_update()
                ).scalar_one_or_none()
                if row is None:
                    raise EnrollmentRefused(
                        "unknown enrollment token; ask the coordinator for a new one"
                    )
                if row.used_at is not None:
                    raise EnrollmentRefused(
                        "this enrollment token was already used; each token works once, "
                        "ask the coordinator for a new one"
                    )
                if row.expires_at <= now:
                    raise EnrollmentRefused(
                        f"this enrollment token expired at {row.expires_at:%Y-%m-%d %H:%M} UTC; "
                        "ask the coordinator for a new one"
                    )
                name = row.retailer_name
                taken = session.scalar(select(t.Retailer.id).where(t.Retailer.name == name))
                if taken is not None:
                    raise EnrollmentRefused(f"a retailer named {name!r} is already enrolled")
                if (
                    session.scalar(select(t.Retailer.id).where(t.Retailer.node_public_key == key))
                    is not None
                ):
                    raise EnrollmentRefused(
                        "this node key is already registered; create a new key pair for this node"
                    )
                claimed = session.execute(
                    update(t.EnrollmentToken)
                    .where(t.EnrollmentToken.id == row.id, t.EnrollmentToken.used_at.is_(None))
                    .values(used_at=now)
                    .execution_options(synchronize_session=False)
                )
                if affected_rows(claimed) != 1:  # a concurrent request redeemed it first
                    raise EnrollmentRefused(
                        "this enrollment token was already used; each token works once, "
                        "ask the coordinator for a new one"
                    )
                retailer_id = session.execute(
                    insert(t.Retailer)
                    .values(name=name, node_public_key=key, status="active", created_at=now)
                    .returning(t.Retailer.id)
                ).scalar_one()
                session.execute(
                    update(t.EnrollmentToken)
                    .where(t.EnrollmentToken.id == row.id)
                    .values(used_by_retailer_id=retailer_id)
                    .execution_options(synchronize_session=False)
                )
                issued = self._credentials.issue_in(
                    session, Role.RETAILER, name=name, retailer_id=retailer_id
                )
                self._audit.append_in(
                    session,
                    f"node@{source}",
                    "enrollment.enrolled",
                    f"retailer:{retailer_id}",
                    {
                        "retailer_name": name,
                        "token_id": row.id,
                        "key_fingerprint": key_fingerprint(key),
                        "credential_id": issued.credential_id,
                        "source": source,
                    },
                )
        except IntegrityError:
            raise EnrollmentRefused(
                "this retailer or node key was registered by another request at the same time"
            ) from None
        return Enrollment(
            retailer_id=retailer_id,
            retailer_name=name,
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            access_expires_at=issued.access_expires_at,
            refresh_expires_at=issued.refresh_expires_at,
            credential_id=issued.credential_id,
        )

    def _token_id(self, token: object) -> int | None:
        if not isinstance(token, str) or len(token) > 128:
            return None
        with self._db.session(readonly=True) as session:
            return session.scalar(
                select(t.EnrollmentToken.id).where(
                    t.EnrollmentToken.token_hash == token_hash(token)
                )
            )

    # -- the register ----------------------------------------------------------------------

    def list_retailers(self, *, include_revoked: bool = True) -> builtins.list[RetailerRecord]:
        """Every enrolled retailer, oldest first."""
        query = select(t.Retailer).order_by(t.Retailer.id)
        if not include_revoked:
            query = query.where(t.Retailer.status == "active")
        with self._db.session(readonly=True) as session:
            return [_retailer(row) for row in session.scalars(query)]

    def retailer(self, retailer_id: int) -> RetailerRecord | None:
        """One retailer, or None if there is no such id."""
        with self._db.session(readonly=True) as session:
            row = session.get(t.Retailer, retailer_id)
            return None if row is None else _retailer(row)

    def active_node_keys(self) -> builtins.list[str]:
        """The public keys of active retailers: the SuperLink's list of nodes allowed in."""
        query = select(t.Retailer.node_public_key).where(t.Retailer.status == "active")
        with self._db.session(readonly=True) as session:
            return list(session.scalars(query.order_by(t.Retailer.id)))

    def set_flower_node_id(
        self, retailer_id: int, node_id: int | None, *, actor: str = "system"
    ) -> RetailerRecord:
        """Record which SuperLink node id the retailer's SuperNode got (None clears it).

        Raises ``NotFoundError`` for an unknown retailer and ``ValueError`` for an id outside
        Flower's unsigned 64-bit range or already recorded for another retailer.
        """
        if node_id is not None and (
            isinstance(node_id, bool) or not 0 <= int(node_id) < FLOWER_ID_LIMIT
        ):
            raise ValueError(f"a Flower node id is an unsigned 64-bit number, got {node_id!r}")
        stored = None if node_id is None else str(int(node_id))
        try:
            with self._db.session() as session:
                row = session.get(t.Retailer, retailer_id, with_for_update=True)
                if row is None:
                    raise NotFoundError(f"there is no retailer #{retailer_id}")
                if row.flower_node_id == stored:
                    return _retailer(row)
                row.flower_node_id = stored
                session.flush()
                self._audit.append_in(
                    session,
                    actor,
                    "retailer.flower_node_id",
                    f"retailer:{retailer_id}",
                    {"flower_node_id": stored},
                )
                return _retailer(row)
        except IntegrityError:
            raise ValueError(f"Flower node id {node_id} belongs to another retailer") from None

    def revoke_retailer(self, retailer_id: int, *, actor: str) -> RetailerRecord:
        """Shut a retailer out: its credentials stop working and its key leaves the SuperLink's
        allow list. Idempotent; raises ``NotFoundError`` for an unknown retailer."""
        with self._db.session() as session:
            row = session.get(t.Retailer, retailer_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"there is no retailer #{retailer_id}")
            if row.status != "revoked":
                row.status = "revoked"
                session.flush()
                revoked = self._credentials.revoke_retailer_in(session, retailer_id)
                self._audit.append_in(
                    session,
                    actor,
                    "retailer.revoke",
                    f"retailer:{retailer_id}",
                    {"retailer_name": row.name, "credentials_revoked": revoked},
                )
            return _retailer(row)


def _retailer(row: t.Retailer) -> RetailerRecord:
    return RetailerRecord(
        id=row.id,
        name=row.name,
        node_public_key=row.node_public_key,
        flower_node_id=None if row.flower_node_id is None else int(row.flower_node_id),
        status=row.status,
        created_at=row.created_at,
    )


class EnrollmentRateLimiter:
    """At most ``max_attempts`` enrollment attempts per source in any ``per`` window.

    Enrollment is the one unauthenticated write the coordinator accepts; this sliding window
    (kept in memory, per process) makes guessing tokens or flooding the audit log slow.
    """

    def __init__(
        self,
        max_attempts: int = 10,
        per: timedelta = timedelta(minutes=1),
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 100_000,
    ) -> None:
        if max_attempts < 1 or per <= timedelta(0):
            raise ValueError("the rate limit needs at least one attempt over a positive window")
        self.max_attempts = max_attempts
        self.window = per.total_seconds()
        self._clock = clock
        self._max_sources = max_sources
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, source: str) -> bool:
        """Count one attempt from ``source``; False (not counted) when it is over the limit."""
        now = self._clock()
        with self._lock:
            if len(self._attempts) >= self._max_sources:
                self._sweep(now)
            seen = self._attempts.setdefault(source, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.max_attempts:
                return False
            seen.append(now)
            return True

    def _sweep(self, now: float) -> None:
        """Forget sources with no attempt in the window (bounds memory under a flood)."""
        for source in [
            s for s, seen in self._attempts.items() if not seen or seen[-1] <= now - self.window
        ]:
            del self._attempts[source]
        if len(self._attempts) >= self._max_sources:  # still full: keep the newest half
            ordered = sorted(
                self._attempts.items(), key=lambda item: item[1][-1] if item[1] else 0.0
            )
            self._attempts = dict(ordered[len(ordered) // 2 :])
