"""Tell the coordinator what this node has spent: its ledger mirror (``POST /api/v1/ledger``).

Why: the node's own ledger is the authority and charges happen there first; the coordinator
keeps a mirror so it can leave out nodes with no budget left before asking them, and so an
auditor can compare the two. Reports are sent off the round's critical path (a worker thread),
with the retailer credential from enrollment (renewed once on a 401). A report that fails is
recorded as an event and simply superseded by the next one: the mirror keeps the newest spend.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shared.node_runtime.events import EventKind, EventLog

log = logging.getLogger(__name__)

ENROLLMENT_CREDENTIALS = Path("enrollment") / "credentials.json"
LEDGER_PATH = "/api/v1/ledger"
REFRESH_PATH = "/api/v1/auth/refresh"


@dataclass(frozen=True)
class SpendReport:
    campaign_id: int
    server_round: int
    spent: float
    cap: float

    def body(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "round": self.server_round,
            "epsilon_spent": self.spent,
            "epsilon_cap": self.cap,
        }


class ReportRefused(Exception):
    """The coordinator did not take the report; the message says why."""


class LedgerReporter:
    """Sends :class:`SpendReport` s one at a time, in order, on a worker thread."""

    def __init__(self, node_dir: Path, *, timeout: float = 10.0) -> None:
        self.node_dir = Path(node_dir)
        self.timeout = timeout
        self.events = EventLog(self.node_dir)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ledger-report")

    def submit(self, report: SpendReport) -> Future[bool]:
        return self._pool.submit(self._deliver, report)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _deliver(self, report: SpendReport) -> bool:
        try:
            self.send(report)
        except (ReportRefused, httpx.HTTPError, OSError, ValueError) as exc:
            log.warning("ledger report for round %s not delivered: %s", report.server_round, exc)
            self.events.append(
                EventKind.ERROR,
                server_round=report.server_round,
                message=f"could not tell the coordinator what was spent ({exc}); the next "
                "round's report will carry it",
                step="ledger_report",
                error=type(exc).__name__,
            )
            return False
        self.events.append(
            EventKind.LEDGER_REPORTED,
            server_round=report.server_round,
            message=f"coordinator told: ε {report.spent:.3f} of {report.cap:.2f} spent",
            campaign_id=report.campaign_id,
            spent=report.spent,
            cap=report.cap,
        )
        return True

    def send(self, report: SpendReport) -> None:
        """One report, renewing the access token once if the coordinator asks for it."""
        credentials = self._credentials()
        api = str(credentials["api_url"]).rstrip("/")
        with httpx.Client(base_url=api, timeout=self.timeout, trust_env=False) as client:
            response = self._post(client, credentials, report)
            if response.status_code == 401:
                credentials = self._renew(client, credentials)
                response = self._post(client, credentials, report)
        if response.status_code not in (200, 201):
            raise ReportRefused(f"HTTP {response.status_code}: {_detail(response)}")

    def _post(
        self, client: httpx.Client, credentials: dict[str, Any], report: SpendReport
    ) -> httpx.Response:
        return client.post(
            LEDGER_PATH,
            json=report.body(),
            headers={"Authorization": f"Bearer {credentials['access_token']}"},
        )

    def _renew(self, client: httpx.Client, credentials: dict[str, Any]) -> dict[str, Any]:
        response = client.post(REFRESH_PATH, json={"refresh_token": credentials["refresh_token"]})
        if response.status_code != 200:
            detail = _detail(response)
            raise ReportRefused(f"the retailer credential could not be renewed: {detail}")
        fresh = response.json()
        renewed = {**credentials}
        for key in ("access_token", "refresh_token", "access_expires_at", "refresh_expires_at"):
            if key in fresh:
                renewed[key] = fresh[key]
        self._save(renewed)
        return renewed

    def _credentials(self) -> dict[str, Any]:
        path = self.node_dir / ENROLLMENT_CREDENTIALS
        data = json.loads(path.read_text("utf-8"))
        for key in ("api_url", "access_token", "refresh_token"):
            if not data.get(key):
                raise ValueError(f"{path} has no {key}: enroll again")
        return dict(data)

    def _save(self, credentials: dict[str, Any]) -> None:
        path = self.node_dir / ENROLLMENT_CREDENTIALS
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(credentials, handle, indent=2)
        tmp.replace(path)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]
