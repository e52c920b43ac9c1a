"""``POST /enroll``: a retailer's node redeems its one-time token with its public key.

This is the one unauthenticated write: the token is the authentication. The decision (token
valid? key acceptable? rate limit?) is ``enroll_flow.enroll_node``'s; this route maps its
outcomes to HTTP: refused is 403 with the reason, too many attempts is 429.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StrictStr

from coordinator.api.deps import API_PREFIX, CoordDep, MetricsDep
from coordinator.api.errors import PUBLIC_RESPONSES, http_error, problem
from coordinator.enroll_flow import EnrollmentRateLimited, enroll_node
from coordinator.pki import fingerprint
from coordinator.services.enrollment import EnrollmentRefused

router = APIRouter(prefix=API_PREFIX, tags=["enrollment"], responses=PUBLIC_RESPONSES)

RETRY_AFTER_SECONDS = 60  # the rate limiter's window


class EnrollRequest(BaseModel):
    """What the node sends: the token it was given and its SuperNode public key."""

    token: Annotated[
        StrictStr,
        Field(min_length=1, max_length=200, description="The one-time enrollment token (rip_e_)"),
    ]
    public_key: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=8192,
            description="The node's OpenSSH public key line (ecdsa-sha2-nistp256/384/521)",
        ),
    ]


class EnrollmentOut(BaseModel):
    """What an enrolled node receives, once: its credential and how to reach the SuperLink."""

    retailer_id: int
    retailer_name: str
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    ca_certificate: str = Field(description="The coordinator's CA (PEM): pin it")
    ca_fingerprint: str
    superlink_address: str | None
    taxonomy_version: str
    flower_node_id: int | None
    registration: str = Field(description='"registered" or "pending: <reason>"')


@router.post(
    "/enroll",
    status_code=201,
    response_model=EnrollmentOut,
    responses={
        403: problem("Refused: unknown, used or expired token, or unacceptable key"),
        429: problem("Too many attempts from this address"),
    },
)
def enroll(body: EnrollRequest, request: Request, coord: CoordDep, metrics: MetricsDep) -> Any:
    """Enroll a node (no authentication: the one-time token is the proof)."""
    source = request.client.host if request.client is not None else "unknown"
    try:
        result = enroll_node(coord, body.token, body.public_key, source=source)
    except EnrollmentRateLimited as exc:
        metrics.enrollments.labels(outcome="rate_limited").inc()
        raise http_error(
            429,
            str(exc) or "too many enrollment attempts; wait a minute and try again",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    except EnrollmentRefused as refused:
        metrics.enrollments.labels(outcome="refused").inc()
        raise http_error(403, f"enrollment refused: {refused.reason}") from None
    metrics.enrollments.labels(outcome="enrolled").inc()
    out: dict[str, Any] = result.to_json()
    return out


class CoordinatorCAOut(BaseModel):
    """The CA nodes pin; public, so an owner can confirm its fingerprint before enrolling."""

    ca_certificate: str = Field(description="The coordinator's CA (PEM)")
    ca_fingerprint: str = Field(description="SHA-256 of the certificate (DER), colon hex")


@router.get("/ca", response_model=CoordinatorCAOut)
def coordinator_ca(coord: CoordDep) -> CoordinatorCAOut:
    """The coordinator's CA certificate (no authentication: a certificate is public)."""
    pem = coord.ca_certificate
    return CoordinatorCAOut(ca_certificate=pem, ca_fingerprint=fingerprint(pem.encode("ascii")))
