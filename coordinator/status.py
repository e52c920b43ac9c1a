"""One status summary for operators (`retail-coordinator status`, `GET /api/v1/status`)."""

from __future__ import annotations

from typing import Any

from coordinator.flower_control import ControlError
from coordinator.runtime import Coordinator
from shared import __version__


def superlink_reachable(coord: Coordinator) -> bool:
    if coord.control is None:
        return False
    try:
        coord.control.list_nodes()
    except ControlError:
        return False
    return True


def status(coord: Coordinator) -> dict[str, Any]:
    retailers = coord.enrollment.list_retailers()
    campaigns = coord.campaigns.list(limit=1000)
    models = coord.models.list()
    by_status: dict[str, int] = {}
    for campaign in campaigns:
        by_status[campaign.status] = by_status.get(campaign.status, 0) + 1
    return {
        "version": __version__,
        "database": {"reachable": coord.db.ping(), "dialect": coord.db.dialect},
        "superlink": {
            "address": coord.superlink_address,
            "reachable": superlink_reachable(coord),
        },
        "retailers": {
            "active": sum(r.status == "active" for r in retailers),
            "registered_with_superlink": sum(r.flower_node_id is not None for r in retailers),
            "total": len(retailers),
        },
        "campaigns": by_status,
        "latest_model": models[0].version if models else None,  # newest first
        "audit_events": coord.audit.count(),
    }
