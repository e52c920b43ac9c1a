"""Enrollment end to end: redeem the token, then admit the node's key to the SuperLink.

The token is checked (and spent) by ``EnrollmentService`` before the SuperLink hears of the key,
so nobody can get a key admitted without a valid token. If the SuperLink is down at that moment
the enrollment still stands and the node is told registration is pending;
``reconcile_registrations`` (run by the daemon at start-up and periodically) finishes it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from coordinator.flower_control import ControlError, NodeKeyInUse, NodeNotFound
from coordinator.pki import fingerprint
from coordinator.runtime import Coordinator
from coordinator.services.enrollment import RetailerRecord
from shared.taxonomy import load_taxonomy

log = logging.getLogger(__name__)


class EnrollmentRateLimited(Exception):
    """Too many enrollment attempts from one source; the message says when to retry."""


@dataclass(frozen=True)
class EnrollmentResult:
    retailer_id: int
    retailer_name: str
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    ca_certificate: str
    ca_fingerprint: str
    superlink_address: str | None
    taxonomy_version: str
    flower_node_id: int | None
    registration: str  # "registered" | "pending: <reason>"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["access_expires_at"] = self.access_expires_at.isoformat()
        out["refresh_expires_at"] = self.refresh_expires_at.isoformat()
        return out


def enroll_node(
    coord: Coordinator, token: str, public_key: str, *, source: str
) -> EnrollmentResult:
    """Redeem ``token`` for the node holding ``public_key`` and admit the key to the SuperLink.

    Raises ``EnrollmentRefused`` (reused, expired or unknown token, bad key) or
    ``EnrollmentRateLimited``.
    """
    if not coord.rate_limiter.check(source):
        raise EnrollmentRateLimited(
            "too many enrollment attempts from this address; wait a minute and try again"
        )
    ca = coord.ca_certificate  # read before the token is spent: a missing file costs no token
    enrollment = coord.enrollment.enroll(token, public_key, source=source)
    node_id, registration = _register(coord, enrollment.retailer_id, public_key)
    return EnrollmentResult(
        retailer_id=enrollment.retailer_id,
        retailer_name=enrollment.retailer_name,
        access_token=enrollment.access_token,
        refresh_token=enrollment.refresh_token,
        access_expires_at=enrollment.access_expires_at,
        refresh_expires_at=enrollment.refresh_expires_at,
        ca_certificate=ca,
        ca_fingerprint=fingerprint(ca.encode("ascii")),
        superlink_address=coord.superlink_address,
        taxonomy_version=load_taxonomy().version,
        flower_node_id=node_id,
        registration=registration,
    )


def _register(coord: Coordinator, retailer_id: int, public_key: str) -> tuple[int | None, str]:
    record = coord.enrollment.retailer(retailer_id)
    if coord.control is None or record is None:
        return None, "pending: the coordinator has no SuperLink running; it registers on start"
    try:
        try:
            node_id = coord.control.register_node(record.node_public_key, record.name)
        except NodeKeyInUse:  # registered earlier, e.g. by an interrupted attempt
            found = coord.control.node_id_for_key(record.node_public_key)
            if found is None:
                raise
            node_id = found
    except ControlError as exc:
        log.warning("registering retailer %s with the SuperLink failed: %s", retailer_id, exc)
        return None, f"pending: the SuperLink did not accept the key yet ({exc})"
    coord.enrollment.set_flower_node_id(retailer_id, node_id)
    return node_id, "registered"


def revoke_retailer(coord: Coordinator, retailer_id: int, *, actor: str) -> RetailerRecord:
    """Shut a retailer out everywhere: its credentials (database) and its node (SuperLink).

    The database side is authoritative and done first; if the SuperLink cannot be reached the
    node is unregistered by ``reconcile_registrations`` once it can.
    """
    record = coord.enrollment.revoke_retailer(retailer_id, actor=actor)
    _unregister(coord, record)
    return record


def _unregister(coord: Coordinator, record: RetailerRecord) -> None:
    if coord.control is None or record.flower_node_id is None:
        return
    try:
        coord.control.unregister_node(record.flower_node_id)
    except NodeNotFound:
        pass
    except ControlError as exc:
        log.warning("unregistering revoked retailer %s: %s", record.id, exc)
        return
    coord.enrollment.set_flower_node_id(record.id, None)


def reconcile_registrations(coord: Coordinator) -> int:
    """Admit every active retailer's key the SuperLink does not know yet, and remove revoked
    ones it still knows; returns how many were registered now."""
    if coord.control is None:
        return 0
    done = 0
    for retailer in coord.enrollment.list_retailers(include_revoked=True):
        if retailer.status != "active":
            _unregister(coord, retailer)  # revoked while the SuperLink was unreachable
            continue
        if retailer.flower_node_id is not None:
            continue
        node_id, _ = _register(coord, retailer.id, retailer.node_public_key)
        done += node_id is not None
    return done
