"""Credentials over HTTP: refresh a token pair, say who I am, create enrollment tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictInt, StrictStr

from coordinator.api.deps import API_PREFIX, INVALID_TOKEN_HEADERS, Admin, AnyRole, CoordDep
from coordinator.api.errors import AUTH_RESPONSES, PUBLIC_RESPONSES, http_error, problem
from coordinator.auth import AuthError
from coordinator.services.enrollment import MAX_TOKEN_TTL

router = APIRouter(prefix=API_PREFIX, tags=["auth"], responses=PUBLIC_RESPONSES)

DEFAULT_TOKEN_SECONDS = 7 * 24 * 3600
# The enrollment service decides how long a token may live; the API only states it up front.
MAX_TOKEN_SECONDS = int(MAX_TOKEN_TTL.total_seconds())


class RefreshRequest(BaseModel):
    """A refresh token (rip_r_...); it is spent by this call."""

    refresh_token: Annotated[StrictStr, Field(min_length=1, max_length=200)]


class TokenPairOut(BaseModel):
    """A new access and refresh token; the old pair stops working."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    access_expires_at: datetime
    refresh_expires_at: datetime


class PrincipalOut(BaseModel):
    """Who a credential acts as."""

    credential_id: int
    role: str
    retailer_id: int | None
    name: str


class EnrollmentTokenRequest(BaseModel):
    """Which retailer the token is for and how long it stays valid."""

    retailer: Annotated[
        StrictStr, Field(min_length=1, max_length=200, description="The retailer's name")
    ]
    expires_in_seconds: Annotated[
        StrictInt,
        Field(
            ge=1,
            le=MAX_TOKEN_SECONDS,
            description=f"Lifetime in seconds (default 7 days, at most {MAX_TOKEN_SECONDS})",
        ),
    ] = DEFAULT_TOKEN_SECONDS


class EnrollmentTokenOut(BaseModel):
    """A one-time enrollment token: shown once, hand it to the retailer out of band."""

    token: str
    retailer: str
    expires_at: datetime


@router.post(
    "/auth/refresh",
    response_model=TokenPairOut,
    responses={401: problem("Unknown, used, expired or revoked refresh token")},
)
def refresh(body: RefreshRequest, coord: CoordDep) -> Any:
    """Exchange a refresh token for a new token pair (rotation: the old pair stops working)."""
    try:
        issued = coord.credentials.refresh(body.refresh_token)
    except AuthError as exc:
        raise http_error(401, str(exc), INVALID_TOKEN_HEADERS) from None
    return {
        "access_token": issued.access_token,
        "refresh_token": issued.refresh_token,
        "access_expires_at": issued.access_expires_at,
        "refresh_expires_at": issued.refresh_expires_at,
    }


@router.get("/me", response_model=PrincipalOut, responses=AUTH_RESPONSES)
def me(principal: AnyRole) -> Any:
    """The credential this request was made with."""
    return {
        "credential_id": principal.credential_id,
        "role": str(principal.role),
        "retailer_id": principal.retailer_id,
        "name": principal.name,
    }


@router.post(
    "/tokens",
    status_code=201,
    response_model=EnrollmentTokenOut,
    responses={
        **AUTH_RESPONSES,
        400: problem("Bad retailer name, or the retailer is already enrolled"),
    },
)
def create_enrollment_token(body: EnrollmentTokenRequest, principal: Admin, coord: CoordDep) -> Any:
    """Create a one-time enrollment token for a retailer (audited by the service)."""
    try:
        token, expires = coord.enrollment.create_token(
            body.retailer, timedelta(seconds=body.expires_in_seconds), actor=principal.name
        )
    except ValueError as exc:
        raise http_error(400, str(exc)) from None
    return {"token": token, "retailer": " ".join(body.retailer.split()), "expires_at": expires}
