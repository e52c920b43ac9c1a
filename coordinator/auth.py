"""API credentials: opaque bearer tokens for admins, viewers and enrolled retailers.

Tokens are random (``secrets.token_urlsafe(32)``, 256 bits) with a readable prefix saying what
they are (``rip_a_`` access, ``rip_r_`` refresh), so a token pasted in the wrong place or
found in a log is recognisable. Only their SHA-256 is stored: a stolen database does not
yield usable tokens, and a lookup by hash needs no secret comparison in Python (the final
equality check is still constant-time). Access tokens are short-lived; refresh tokens rotate
on every use, so a leaked refresh token stops working once its owner refreshes.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from coordinator.db import schema as t
from coordinator.db.database import Database, affected_rows
from coordinator.db.types import Clock, as_utc, utc_now

if TYPE_CHECKING:
    from coordinator.audit import AuditLog

ACCESS_PREFIX = "rip_a_"
REFRESH_PREFIX = "rip_r_"
_TOKEN_BYTES = 32
_MAX_TOKEN_LENGTH = 128  # longer strings are not ours; do not even hash them


class Role(StrEnum):
    """What a credential may do: administer, act as one retailer's node, or only read."""

    ADMIN = "admin"
    RETAILER = "retailer"
    VIEWER = "viewer"


class AuthError(Exception):
    """A credential operation was refused; the message can be shown to the caller."""


@dataclass(frozen=True)
class Principal:
    """Who an authenticated request acts as."""

    credential_id: int
    role: Role
    retailer_id: int | None
    name: str


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token pair; the plain tokens exist only here, never in storage."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    credential_id: int


@dataclass(frozen=True)
class CredentialRecord:
    """A stored credential without its secrets (for listings)."""

    id: int
    role: Role
    retailer_id: int | None
    name: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    revoked_at: datetime | None
    created_at: datetime


def token_hash(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(prefix: str) -> str:
    """A fresh opaque token: ``prefix`` + 43 URL-safe characters (256 random bits)."""
    return prefix + secrets.token_urlsafe(_TOKEN_BYTES)


def _looks_like(token: object, prefix: str) -> bool:
    return (
        isinstance(token, str)
        and token.startswith(prefix)
        and len(token) <= _MAX_TOKEN_LENGTH
        and token.isascii()
    )


class CredentialService:
    """Issues, checks, rotates and revokes API credentials stored in ``db``.

    ``audit`` (optional) records issuing and revocation; ``clock`` is injectable so expiry can
    be tested without waiting.
    """

    def __init__(
        self,
        db: Database,
        *,
        access_ttl: timedelta = timedelta(hours=1),
        refresh_ttl: timedelta = timedelta(days=30),
        clock: Clock = utc_now,
        audit: AuditLog | None = None,
    ) -> None:
        if access_ttl <= timedelta(0) or refresh_ttl <= timedelta(0):
            raise ValueError("token lifetimes must be positive")
        if refresh_ttl < access_ttl:
            raise ValueError("the refresh lifetime must not be shorter than the access lifetime")
        self._db = db
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._clock = clock
        self._audit = audit

    def _now(self) -> datetime:
        return as_utc(self._clock(), what="the credential clock")

    # -- issuing ---------------------------------------------------------------------------

    def issue(
        self,
        role: Role | str,
        *,
        name: str,
        retailer_id: int | None = None,
        access_ttl: timedelta | None = None,
        actor: str = "system",
    ) -> IssuedToken:
        """Create a credential and return its tokens (shown once; only hashes are kept).

        Retailer credentials must name their ``retailer_id`` (an existing, active retailer);
        admin and viewer credentials must not. Raises ``AuthError`` otherwise.
        """
        with self._db.session() as session:
            issued = self.issue_in(
                session, role, name=name, retailer_id=retailer_id, access_ttl=access_ttl
            )
            if self._audit is not None:
                self._audit.append_in(
                    session,
                    actor,
                    "credential.issue",
                    f"credential:{issued.credential_id}",
                    {"role": str(Role(role)), "name": name, "retailer_id": retailer_id},
                )
            return issued

    def issue_in(
        self,
        session: Session,
        role: Role | str,
        *,
        name: str,
        retailer_id: int | None = None,
        access_ttl: timedelta | None = None,
    ) -> IssuedToken:
        """``issue`` within the caller's transaction (enrollment issues the retailer's first
        credential in the same transaction that registers it); not audited here."""
        try:
            role = Role(role)
        except ValueError:
            raise AuthError(f"unknown role {role!r}; use admin, retailer or viewer") from None
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise AuthError("a credential needs a name of 1 to 100 characters")
        if role is Role.RETAILER:
            if retailer_id is None:
                raise AuthError("a retailer credential must name its retailer")
            status = session.scalar(select(t.Retailer.status).where(t.Retailer.id == retailer_id))
            if status is None:
                raise AuthError(f"there is no retailer #{retailer_id}")
            if status != "active":
                raise AuthError(f"retailer #{retailer_id} is revoked; it cannot get credentials")
        elif retailer_id is not None:
            raise AuthError(f"an {role} credential must not belong to a retailer")
        ttl = self.access_ttl if access_ttl is None else access_ttl
        if ttl <= timedelta(0) or ttl > self.refresh_ttl:
            raise AuthError("the access lifetime must be positive and within the refresh lifetime")
        now = self._now()
        access, refresh = new_token(ACCESS_PREFIX), new_token(REFRESH_PREFIX)
        access_expires, refresh_expires = now + ttl, now + self.refresh_ttl
        result = session.execute(
            insert(t.Credential)
            .values(
                role=str(role),
                retailer_id=retailer_id,
                name=name,
                access_hash=token_hash(access),
                refresh_hash=token_hash(refresh),
                access_expires_at=access_expires,
                refresh_expires_at=refresh_expires,
                revoked_at=None,
                created_at=now,
            )
            .returning(t.Credential.id)
        )
        credential_id = int(result.scalar_one())
        return IssuedToken(access, refresh, access_expires, refresh_expires, credential_id)

    # -- checking --------------------------------------------------------------------------

    def authenticate(self, access_token: str) -> Principal | None:
        """The principal behind a live access token; None when the token is unknown, expired,
        revoked, not an access token, or belongs to a revoked retailer."""
        if not _looks_like(access_token, ACCESS_PREFIX):
            return None
        digest = token_hash(access_token)
        query = (
            select(t.Credential, t.Retailer.status)
            .outerjoin(t.Retailer, t.Retailer.id == t.Credential.retailer_id)
            .where(t.Credential.access_hash == digest)
        )
        with self._db.session(readonly=True) as session:
            found = session.execute(query).first()
        if found is None:
            return None
        credential, retailer_status = found
        if not hmac.compare_digest(credential.access_hash, digest):
            return None
        if credential.revoked_at is not None or credential.access_expires_at <= self._now():
            return None
        if credential.retailer_id is not None and retailer_status != "active":
            return None
        return Principal(
            credential.id, Role(credential.role), credential.retailer_id, credential.name
        )

    # -- rotating and revoking -------------------------------------------------------------

    def refresh(self, refresh_token: str) -> IssuedToken:
        """Exchange a live refresh token for a new access and refresh token pair.

        Both old tokens stop working at once (rotation). Raises ``AuthError`` when the refresh
        token is unknown (or already rotated), expired or revoked.
        """
        if not _looks_like(refresh_token, REFRESH_PREFIX):
            raise AuthError("this is not a refresh token; sign in again")
        digest = token_hash(refresh_token)
        now = self._now()
        with self._db.session() as session:
            found = session.execute(
                select(t.Credential, t.Retailer.status)
                .outerjoin(t.Retailer, t.Retailer.id == t.Credential.retailer_id)
                .where(t.Credential.refresh_hash == digest)
            ).first()
            if found is None or not hmac.compare_digest(found[0].refresh_hash, digest):
                raise AuthError(
                    "unknown refresh token (it may already have been used); sign in again"
                )
            credential, retailer_status = found
            if credential.revoked_at is not None:
                raise AuthError("this credential was revoked; ask the coordinator admin")
            if credential.retailer_id is not None and retailer_status != "active":
                raise AuthError("this retailer was revoked; ask the coordinator admin")
            if credential.refresh_expires_at <= now:
                raise AuthError("the refresh token expired; sign in (or enroll) again")
            access, refresh = new_token(ACCESS_PREFIX), new_token(REFRESH_PREFIX)
            access_expires, refresh_expires = now + self.access_ttl, now + self.refresh_ttl
            changed = session.execute(
                update(t.Credential)
                .where(t.Credential.id == credential.id, t.Credential.refresh_hash == digest)
                .values(
                    access_hash=token_hash(access),
                    refresh_hash=token_hash(refresh),
                    access_expires_at=access_expires,
                    refresh_expires_at=refresh_expires,
                )
                .execution_options(synchronize_session=False)
            )
            if affected_rows(changed) != 1:  # a concurrent refresh with the same token won
                raise AuthError("this refresh token was just used; sign in again")
            return IssuedToken(access, refresh, access_expires, refresh_expires, credential.id)

    def revoke(self, credential_id: int, *, actor: str = "system") -> None:
        """Make a credential's tokens stop working at once (idempotent). Raises ``AuthError``
        for an unknown id."""
        with self._db.session() as session:
            credential = session.get(t.Credential, credential_id)
            if credential is None:
                raise AuthError(f"there is no credential #{credential_id}")
            if credential.revoked_at is None:
                credential.revoked_at = self._now()
                if self._audit is not None:
                    session.flush()
                    self._audit.append_in(
                        session, actor, "credential.revoke", f"credential:{credential_id}", {}
                    )

    def revoke_retailer_in(self, session: Session, retailer_id: int) -> int:
        """Revoke every live credential of one retailer in the caller's transaction; returns
        how many were revoked."""
        result = session.execute(
            update(t.Credential)
            .where(t.Credential.retailer_id == retailer_id, t.Credential.revoked_at.is_(None))
            .values(revoked_at=self._now())
            .execution_options(synchronize_session=False)
        )
        return affected_rows(result)

    def list(self, *, include_revoked: bool = False) -> builtins.list[CredentialRecord]:
        """Stored credentials (never their tokens), oldest first."""
        query = select(t.Credential).order_by(t.Credential.id)
        if not include_revoked:
            query = query.where(t.Credential.revoked_at.is_(None))
        with self._db.session(readonly=True) as session:
            return [_record(row) for row in session.scalars(query)]


def _record(row: t.Credential) -> CredentialRecord:
    return CredentialRecord(
        id=row.id,
        role=Role(row.role),
        retailer_id=row.retailer_id,
        name=row.name,
        access_expires_at=row.access_expires_at,
        refresh_expires_at=row.refresh_expires_at,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
    )
