"""Who is calling, and may they: the API's authentication and role dependencies.

Every endpoint except enrollment, token refresh and the health probes declares the roles it
serves through ``require(*roles)``, so a route cannot forget its check and the OpenAPI page
shows the bearer scheme on each of them. Missing, unknown, expired and revoked tokens are all
401 with ``WWW-Authenticate: Bearer`` (the client should get a new token); a valid token of the
wrong role, or a retailer asking for another retailer's records, is 403 (a new token will not
help).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from coordinator.api.errors import http_error
from coordinator.api.metrics import ApiMetrics
from coordinator.auth import Principal, Role
from coordinator.campaign_runner import CampaignRunner
from coordinator.runtime import Coordinator

API_PREFIX = "/api/v1"  # every route but the probes and /metrics lives under it

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="AccessToken",
    description=(
        "An access token (rip_a_...) from enrollment, from POST /api/v1/auth/refresh, or "
        "issued to an admin or viewer by `retail-coordinator`."
    ),
)

NO_CREDENTIAL_MESSAGE = (
    "authentication required: send your access token as 'Authorization: Bearer <token>'"
)
BAD_CREDENTIAL_MESSAGE = (
    "the access token is invalid, expired or revoked: get a new one with "
    "POST /api/v1/auth/refresh (or enroll again / ask the coordinator's admin)"
)
MISSING_TOKEN_HEADERS = {"WWW-Authenticate": "Bearer"}
INVALID_TOKEN_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def coordinator_of(connection: HTTPConnection) -> Coordinator:
    """The ``Coordinator`` the app was created with (requests and WebSockets alike)."""
    return cast(Coordinator, connection.app.state.coord)


def get_coord(request: Request) -> Coordinator:
    """Dependency: the app's ``Coordinator``."""
    return coordinator_of(request)


def get_runner(request: Request) -> CampaignRunner | None:
    """Dependency: the campaign runner, None when the coordinator runs without a SuperLink."""
    return cast(CampaignRunner | None, request.app.state.runner)


def get_metrics(request: Request) -> ApiMetrics:
    """Dependency: the app's own metrics (its private Prometheus registry)."""
    return cast(ApiMetrics, request.app.state.metrics)


CoordDep = Annotated[Coordinator, Depends(get_coord)]
RunnerDep = Annotated[CampaignRunner | None, Depends(get_runner)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


def authenticate_token(coord: Coordinator, token: str | None) -> Principal:
    """The principal behind an access token, or a 401 ``HTTPException`` saying what to do."""
    if not token:
        raise http_error(401, NO_CREDENTIAL_MESSAGE, MISSING_TOKEN_HEADERS)
    principal = coord.credentials.authenticate(token)
    if principal is None:
        raise http_error(401, BAD_CREDENTIAL_MESSAGE, INVALID_TOKEN_HEADERS)
    return principal


def current_principal(
    coord: CoordDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Dependency: the authenticated caller (401 when there is none)."""
    return authenticate_token(coord, credentials.credentials if credentials else None)


def _role_list(roles: frozenset[Role]) -> str:
    names = [str(role) for role in Role if role in roles]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """Dependency factory: the caller, if their credential has one of ``roles`` (else 403)."""
    if not roles:
        raise ValueError("require() needs at least one role")
    allowed = frozenset(roles)

    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise http_error(
                403,
                f"this needs the {_role_list(allowed)} role; this credential has the "
                f"{principal.role} role",
            )
        return principal

    dependency.__name__ = "require_" + "_or_".join(sorted(str(role) for role in allowed))
    return dependency


def ensure_can_read_retailer(principal: Principal, retailer_id: int) -> None:
    """Admins and viewers read every retailer; a retailer only itself (else 403).

    Checked before looking the record up, so a retailer cannot probe which ids exist.
    """
    if principal.role is Role.RETAILER and principal.retailer_id != retailer_id:
        raise http_error(
            403,
            f"a retailer credential may only read its own records (retailer "
            f"#{principal.retailer_id}), not retailer #{retailer_id}'s",
        )


Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
AdminOrViewer = Annotated[Principal, Depends(require(Role.ADMIN, Role.VIEWER))]
AdminOrRetailer = Annotated[Principal, Depends(require(Role.ADMIN, Role.RETAILER))]
RetailerOnly = Annotated[Principal, Depends(require(Role.RETAILER))]
AnyRole = Annotated[Principal, Depends(require(Role.ADMIN, Role.RETAILER, Role.VIEWER))]
