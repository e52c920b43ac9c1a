"""The SuperLink's Control API, called in-process the way the ``flwr`` CLI calls it.

In Flower 1.42 the Control API is protobuf over HTTPS on the SuperLink's one port
(``flwr.supercore.control.ControlHttpClient``). The CLI builds that client with the CA as root
certificate, an ``x-flwr-client: cli`` header and, only when the SuperLink has account
authentication, a bearer token. Our SuperLink runs without account authentication (its
default, a no-op plugin: every caller is the same anonymous account), so this module builds the
same client and sends the same messages directly. Everything is in-process: no ``flwr``
subprocess, no ``FLWR_HOME/config.toml`` connection and no ``flwr`` start-up second per call
(registering a key took about 35 ms here against 1.1-1.7 s through the CLI). Runs are submitted
as the CLI's ``flwr run APP_DIR NAME`` does: build the FAB from the app directory, validate
its ``pyproject.toml``, send StartRun with the run-config overrides.

Whoever can reach the Control API can register nodes and submit runs: the SuperLink must bind
it to loopback or a network only the coordinator reaches (the daemon binds 127.0.0.1 by
default); account authentication is a Flower enterprise feature.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.cli.build import build_fab_from_disk
from flwr.cli.config_utils import load_and_validate
from flwr.cli.utils import AppPathDepthError
from flwr.common.serde import fab_to_proto, user_config_to_proto
from flwr.proto.control_pb2 import (
    ListNodesRequest,
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
    StopRunRequest,
    StreamLogsRequest,
    UnregisterNodeRequest,
)
from flwr.supercore.constant import FLWR_CLIENT_METADATA_KEY
from flwr.supercore.control import ControlHttpClient
from flwr.supercore.error import ApiErrorCode, FlowerError
from flwr.supercore.fab import Fab
from flwr.supercore.primitives.asymmetric import public_key_to_bytes, uses_nist_ec_curve
from flwr.supercore.protobuf.client import ProtobufCall, ProtobufRequestContext

Scalar = bool | int | float | str
_T = TypeVar("_T")

# Run status text as `flwr ls` shows it: "pending", "starting", "running", or
# "finished:completed" / "finished:failed" / "finished:stopped".
FINISHED_PREFIX = "finished"


class ControlError(RuntimeError):
    """The SuperLink refused or failed a Control API call; ``code`` is Flower's ApiErrorCode
    (0 when the reply carried none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class SuperLinkUnavailable(ControlError):
    """No connection (not started, restarting, wrong address or CA)."""


class NodeKeyInUse(ControlError):
    """This public key is already registered (each SuperNode key can be registered once)."""


class NodeNotFound(ControlError):
    """No such node id."""


class RunNotFound(ControlError):
    """No such run id."""


class InvalidNodeKey(ValueError):
    """Not an ``ecdsa-sha2-nistp*`` OpenSSH public key line on a NIST curve."""


class InvalidApp(ValueError):
    """The Flower App directory cannot be built into a FAB (message says why)."""


@dataclass(frozen=True)
class NodeInfo:
    """A SuperNode as the SuperLink knows it. ``node_id`` is an unsigned 64-bit integer: it
    may exceed a signed BIGINT, store it as text or NUMERIC. ``status`` is one of
    "registered" (never connected), "online", "offline", "unregistered"."""

    node_id: int
    name: str
    status: str
    public_key_pem: str
    registered_at: str
    last_activated_at: str
    last_deactivated_at: str
    unregistered_at: str


@dataclass(frozen=True)
class RunInfo:
    run_id: int
    status: str  # as run_status()
    details: str
    fab_id: str
    fab_version: str
    fab_hash: str
    pending_at: str
    running_at: str
    finished_at: str

    @property
    def finished(self) -> bool:
        return self.status.startswith(FINISHED_PREFIX)


class _CliHeaderInterceptor:
    """Marks calls as coming from the CLI, as ``flwr`` does (Flower records a run's source),
    and asks for the connection to be closed after each call: calls are rare, a pooled
    connection would go stale at every SuperLink restart, and an idle TLS keep-alive
    connection holds up the SuperLink's graceful shutdown (uvicorn waits for it)."""

    def intercept(self, context: ProtobufRequestContext, call_next: ProtobufCall) -> httpx.Response:
        context.request.headers[FLWR_CLIENT_METADATA_KEY] = "cli"
        context.request.headers["Connection"] = "close"
        return call_next(context)


def node_key_bytes(public_key_line: str) -> bytes:
    """The key as Flower stores it (PEM SubjectPublicKeyInfo), after the same checks the CLI
    makes: an EC key on a NIST curve."""
    try:
        key = serialization.load_ssh_public_key(public_key_line.strip().encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise InvalidNodeKey(f"not an OpenSSH public key line: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not uses_nist_ec_curve(key):
        raise InvalidNodeKey("node keys must be EC keys on a NIST curve (ecdsa-sha2-nistp384)")
    return public_key_to_bytes(key)


def _text(value: str) -> str:
    return value or ""


class FlowerControl:
    """A Control API client for one SuperLink (``host:port``) whose TLS certificate is signed
    by ``root_certificates`` (the CA's PEM bytes or file). Thread-safe; close it when done."""

    def __init__(
        self, address: str, root_certificates: bytes | Path, *, timeout: float = 30.0
    ) -> None:
        ca = (
            root_certificates.read_bytes()
            if isinstance(root_certificates, Path)
            else root_certificates
        )
        self.address = address
        # What ControlHttpClient.from_server_address does with root certificates (an SSL
        # context trusting only this CA, host name checked), with our own timeout.
        context = ssl.create_default_context(cadata=ca.decode("ascii"))
        self._client = ControlHttpClient(
            f"https://{address}",
            interceptors=[_CliHeaderInterceptor()],
            verify=context,
            timeout=timeout,
        )

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        """Run one Control API call, turning transport and API errors into ControlError."""
        try:
            return call()
        except httpx.RequestError as exc:
            raise SuperLinkUnavailable(
                f"cannot reach the SuperLink at {self.address} to {what}: {exc}"
            ) from None
        except httpx.HTTPStatusError as exc:
            raise _api_error(what, exc.response) from None

    # -- SuperNodes -----------------------------------------------------------------------

    def register_node(self, public_key_line: str, name: str) -> int:
        """Admit a SuperNode's key; returns the node id Flower assigned (RegisterNode returns
        it). Raises NodeKeyInUse if the key is registered already (see node_id_for_key)."""
        key = node_key_bytes(public_key_line)
        response = self._call(
            "register a node",
            lambda: self._client.RegisterNode(RegisterNodeRequest(public_key=key, name=name)),
        )
        if not response.node_id:
            raise ControlError("the SuperLink registered the node but returned no node id")
        return int(response.node_id)

    def list_nodes(self) -> list[NodeInfo]:
        """Every node registered through this (anonymous) account, unregistered ones too."""
        response = self._call("list nodes", lambda: self._client.ListNodes(ListNodesRequest()))
        return [
            NodeInfo(
                node_id=int(info.node_id),
                name=_text(info.name),
                status=info.status,
                public_key_pem=info.public_key.decode("ascii", "replace"),
                registered_at=_text(info.registered_at),
                last_activated_at=_text(info.last_activated_at),
                last_deactivated_at=_text(info.last_deactivated_at),
                unregistered_at=_text(info.unregistered_at),
            )
            for info in response.nodes_info
        ]

    def node_id_for_key(self, public_key_line: str) -> int | None:
        """The id under which this key is registered (and not unregistered), if any: lets an
        enrollment that was interrupted after RegisterNode be completed instead of failing."""
        wanted = node_key_bytes(public_key_line).decode("ascii")
        for node in self.list_nodes():
            if node.public_key_pem == wanted and node.status != "unregistered":
                return node.node_id
        return None

    def unregister_node(self, node_id: int) -> None:
        """Revoke a node: the SuperLink refuses its key from now on (Flower keeps the row with
        status "unregistered"; the same key cannot be registered again)."""
        self._call(
            "unregister a node",
            lambda: self._client.UnregisterNode(UnregisterNodeRequest(node_id=node_id)),
        )

    # -- runs -----------------------------------------------------------------------------

    def submit_run(self, app_dir: Path, run_config: Mapping[str, Scalar]) -> int:
        """Start a run of the Flower App in ``app_dir`` with ``run_config`` overriding its
        ``[tool.flwr.app.config]``; returns the run id. Same as ``flwr run APP_DIR NAME
        --run-config ...``. Keys must exist in the app's config (Flower rejects others)."""
        fab = build_fab(app_dir)
        overrides = dict(run_config)
        for key, value in overrides.items():
            if not isinstance(value, bool | int | float | str):
                raise TypeError(f"run config {key!r}: {value!r} is not a bool, int, float or str")
        request = StartRunRequest(
            fab=fab_to_proto(fab),
            override_config=user_config_to_proto(overrides),
            federation="",  # the SuperLink's default federation, as the CLI sends
        )
        response = self._call("start a run", lambda: self._client.StartRun(request))
        if not response.HasField("run_id"):
            note = response.note if response.HasField("note") else "no reason given"
            raise ControlError(f"the SuperLink did not start the run: {note}")
        return int(response.run_id)

    def run_info(self, run_id: int) -> RunInfo:
        response = self._call(
            "read a run", lambda: self._client.ListRuns(ListRunsRequest(run_id=run_id))
        )
        if run_id not in response.run_dict:
            raise RunNotFound(f"run {run_id} is not known to the SuperLink", 0)
        run = response.run_dict[run_id]
        status = run.status.status
        if run.status.sub_status:
            status = f"{status}:{run.status.sub_status}"
        return RunInfo(
            run_id=int(run.run_id),
            status=status,
            details=_text(run.status.details),
            fab_id=run.fab_id,
            fab_version=run.fab_version,
            fab_hash=run.fab_hash,
            pending_at=_text(run.pending_at),
            running_at=_text(run.running_at),
            finished_at=_text(run.finished_at),
        )

    def run_status(self, run_id: int) -> str:
        """ "pending", "starting", "running", "finished:completed", "finished:failed" or
        "finished:stopped" (as ``flwr ls`` shows)."""
        return self.run_info(run_id).status

    def run_logs(self, run_id: int, after_timestamp: float = 0.0) -> tuple[str, float]:
        """The ServerApp's output so far after ``after_timestamp`` and the timestamp to pass
        next time (``flwr log`` without ``--stream``: the first reply of the log stream)."""

        def first_reply() -> tuple[str, float]:
            replies = self._client.StreamLogs(
                StreamLogsRequest(run_id=run_id, after_timestamp=after_timestamp)
            )
            try:
                for reply in replies:
                    return reply.log_output, max(reply.latest_timestamp, after_timestamp)
            finally:
                replies.close()
            return "", after_timestamp

        return self._call("read a run's log", first_reply)

    def stop_run(self, run_id: int) -> bool:
        """Ask the SuperLink to stop a run; False if it was already finished."""
        try:
            response = self._call(
                "stop a run", lambda: self._client.StopRun(StopRunRequest(run_id=run_id))
            )
        except ControlError as exc:
            if exc.code == ApiErrorCode.RUN_ALREADY_FINISHED:
                return False
            raise
        return bool(response.success)


def build_fab(app_dir: Path) -> Fab:
    """Validate ``app_dir/pyproject.toml`` (components importable here) and zip the FAB, as
    ``flwr run`` does; the FAB's hash is what a node's allow-list of trusted releases holds."""
    app_dir = Path(app_dir).expanduser().resolve()
    try:
        load_and_validate(app_dir / "pyproject.toml")
        content = build_fab_from_disk(app_dir)
    except (ValueError, AppPathDepthError, OSError) as exc:
        raise InvalidApp(f"{app_dir}: {exc}") from None
    return Fab(hashlib.sha256(content).hexdigest(), content, {})


_ERRORS: dict[int, type[ControlError]] = {
    ApiErrorCode.PUBLIC_KEY_ALREADY_IN_USE: NodeKeyInUse,
    ApiErrorCode.NODE_NOT_FOUND: NodeNotFound,
    ApiErrorCode.NODE_NOT_FOUND_OR_NOT_OWNER: NodeNotFound,
    ApiErrorCode.RUN_ID_NOT_FOUND: RunNotFound,
}


def _api_error(what: str, response: httpx.Response) -> ControlError:
    error = FlowerError.from_json(response.text)
    if error is None:
        return ControlError(f"SuperLink failed to {what}: HTTP {response.status_code}")
    detail = f" ({error.public_details})" if error.public_details else ""
    kind = _ERRORS.get(error.code, ControlError)
    return kind(f"SuperLink refused to {what}: {error.message}{detail}", error.code)
