"""Published global models: list, read a card, download the verified .npz file.

A node runs whatever it downloads on its own data, so the file is served only after the
registry has checked it against its published SHA-256, the checksum is sent along
(``X-Checksum-SHA256``) for the node to check again, and every download is audited.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from coordinator.api.deps import API_PREFIX, AdminOrRetailer, AnyRole, CoordDep
from coordinator.api.errors import AUTH_RESPONSES, NOT_FOUND, http_error, problem
from coordinator.services.models import ModelIntegrityError

router = APIRouter(prefix=API_PREFIX, tags=["models"], responses=AUTH_RESPONSES)
log = logging.getLogger("coordinator.api")

Version = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class ModelOut(BaseModel):
    """A published model: its checksum and model card (the file is downloaded separately)."""

    version: str
    campaign_id: int
    sha256: str
    card: dict[str, Any]
    created_at: datetime


@router.get("/models", response_model=list[ModelOut])
def list_models(principal: AnyRole, coord: CoordDep) -> Any:
    """Every published model, newest first."""
    return [record.to_json() for record in coord.models.list()]


@router.get("/models/{version}", response_model=ModelOut, responses={404: NOT_FOUND})
def get_model(version: Version, principal: AnyRole, coord: CoordDep) -> Any:
    """One model's card and checksum."""
    record = coord.models.get(version)
    if record is None:
        raise http_error(404, f"there is no model version {version!r}")
    return record.to_json()


@router.get(
    "/models/{version}/download",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "The .npz file; X-Checksum-SHA256 holds its SHA-256",
        },
        404: NOT_FOUND,
        500: problem("The stored file failed its integrity check and is not served"),
    },
)
def download_model(version: Version, principal: AdminOrRetailer, coord: CoordDep) -> Response:
    """The model's .npz file, checked against its SHA-256 first (audited)."""
    record = coord.models.get(version)
    if record is None:
        raise http_error(404, f"there is no model version {version!r}")
    try:
        data = coord.models.read_bytes(version)  # verified after reading: no check/use gap
    except ModelIntegrityError as exc:
        log.error("refused to serve model %s: %s", version, exc)
        raise http_error(
            500,
            f"model {version} failed its integrity check and is not served; the "
            "coordinator's admin must republish it",
        ) from None
    coord.audit.append(
        principal.name,
        "model.download",
        f"model:{version}",
        {
            "sha256": record.sha256,
            "bytes": len(data),
            "role": str(principal.role),
            "credential_id": principal.credential_id,
            "retailer_id": principal.retailer_id,
        },
    )
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={
            "X-Checksum-SHA256": record.sha256,
            "Content-Disposition": f'attachment; filename="{version}.npz"',
        },
    )
