"""The Privacy page's two questions to the coordinator, with the node's enrollment credential:
which campaign is offered (to price its next round) and "delete what you hold about me".

Why its own module: it is the only network code of the page. It runs on a worker thread,
refreshes an expired access token once (the coordinator rotates the pair, so the new pair is
written back to ``credentials.json`` atomically, 0600) and turns every failure into one
sentence the owner can act on.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from desktop_client.viewmodels.privacy_budget import CampaignOffer
from shared.enrollment import CA_FILE, CREDENTIALS_FILE, enrollment_dir

OPEN_CAMPAIGNS = ("pending", "running")
DELETION_PATH = "/deletion-requests"


class CoordinatorProblem(Exception):
    """The coordinator could not be asked; the message says why and what to do."""


@dataclass(frozen=True)
class DeletionReceipt:
    """The coordinator's record of the request (its audit event)."""

    request_id: int
    retailer_id: int
    requested_at: str
    message: str


class CoordinatorClient:
    """Authenticated calls to ``/api/v1`` as this node's retailer credential."""

    def __init__(
        self,
        node_dir: Path,
        *,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.node_dir = Path(node_dir)
        self.timeout = timeout
        self.transport = transport

    @property
    def credentials_path(self) -> Path:
        return enrollment_dir(self.node_dir) / CREDENTIALS_FILE

    def _credentials(self) -> dict[str, Any]:
        try:
            data = json.loads(self.credentials_path.read_text("utf-8"))
        except (OSError, ValueError):
            raise CoordinatorProblem(
                "this computer is not enrolled with a coordinator yet: enroll on the Connect "
                "page first"
            ) from None
        if not isinstance(data, dict) or not data.get("api_url") or not data.get("access_token"):
            raise CoordinatorProblem(
                f"{self.credentials_path} is incomplete; enroll again on the Connect page"
            )
        return data

    def _verify(self, base: str) -> ssl.SSLContext | bool:
        """Over HTTPS, trust the coordinator's CA pinned at enrollment."""
        ca = enrollment_dir(self.node_dir) / CA_FILE
        if base.startswith("https://") and ca.is_file():
            return ssl.create_default_context(cafile=str(ca))
        return True

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """JSON of a successful reply; a 401 is retried once after refreshing the token."""
        credentials = self._credentials()
        base = str(credentials["api_url"]).rstrip("/") + "/api/v1"
        with httpx.Client(
            timeout=self.timeout,
            transport=self.transport,
            verify=self._verify(base),
            trust_env=False,  # a shop's proxy settings must not divert the coordinator's calls
        ) as client:
            response = self._send(client, method, base + path, credentials, body)
            if response.status_code == 401 and credentials.get("refresh_token"):
                credentials = self._renewed(client, base, credentials)
                response = self._send(client, method, base + path, credentials, body)
        if response.status_code >= 400:
            raise CoordinatorProblem(
                f"the coordinator refused (HTTP {response.status_code}): {_detail(response)}"
            )
        return response.json()

    def _send(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        credentials: dict[str, Any],
        body: Any,
    ) -> httpx.Response:
        try:
            return client.request(
                method,
                url,
                json=body,
                headers={"Authorization": f"Bearer {credentials['access_token']}"},
            )
        except httpx.TimeoutException:
            raise CoordinatorProblem(
                f"the coordinator at {credentials['api_url']} did not answer; check your "
                "network and try again later"
            ) from None
        except httpx.TransportError as exc:
            raise CoordinatorProblem(
                f"cannot reach the coordinator at {credentials['api_url']} "
                f"({exc or type(exc).__name__}); check your network and try again later"
            ) from None

    def _renewed(
        self, client: httpx.Client, base: str, credentials: dict[str, Any]
    ) -> dict[str, Any]:
        """Fresh credentials: the node's runner may have rotated the pair meanwhile (its
        ledger reports renew the same credential), so a refused refresh is retried once
        with what ``credentials.json`` holds now."""
        try:
            return self._refresh(client, base, credentials)
        except CoordinatorProblem:
            current = self._credentials()
            if current.get("refresh_token") == credentials.get("refresh_token"):
                raise
            return current

    def _refresh(
        self, client: httpx.Client, base: str, credentials: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            response = client.post(
                base + "/auth/refresh", json={"refresh_token": credentials["refresh_token"]}
            )
        except httpx.TransportError:
            raise CoordinatorProblem(
                f"cannot reach the coordinator at {credentials['api_url']}; try again later"
            ) from None
        if response.status_code != 200:
            raise CoordinatorProblem(
                "the coordinator no longer accepts this computer's credential "
                f"({_detail(response)}); enroll again on the Connect page"
            )
        fresh = {**credentials, **response.json()}
        _write_private_json(self.credentials_path, fresh)
        return fresh

    # -- the two questions ----------------------------------------------------------------

    def current_offer(self) -> CampaignOffer | None:
        """The newest campaign that is pending or running, None when nothing is offered."""
        listed = self.request("GET", "/campaigns?limit=50")
        for item in listed if isinstance(listed, list) else []:
            if item.get("status") in OPEN_CAMPAIGNS:
                return CampaignOffer(
                    campaign_id=int(item["id"]),
                    status=str(item["status"]),
                    rounds=int(item["rounds"]),
                    epsilon=float(item["epsilon"]),
                    tasks=tuple(str(t) for t in item.get("tasks", [])),
                )
        return None

    def request_deletion(self, note: str = "") -> DeletionReceipt:
        """File the right-to-deletion request for this retailer (recorded and audited)."""
        reply = self.request("POST", DELETION_PATH, {"note": note[:500]})
        return DeletionReceipt(
            request_id=int(reply["id"]),
            retailer_id=int(reply["retailer_id"]),
            requested_at=str(reply["requested_at"]),
            message=str(reply.get("message", "")),
        )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail) if detail else response.reason_phrase


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically with owner-only permissions (it holds tokens)."""
    fd, name = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        Path(name).replace(path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
