"""NodeService with a key kept encrypted: the SuperNode gets a run-time copy, only while running.

A real ``flower-supernode`` is started against an address where no SuperLink listens (it keeps
trying, which is all this test needs): the key it was given is the 0600 copy under
``NODE_DIR/run/``, and stopping the node removes that copy. A missing or wrong passphrase stops
``start()`` before any process runs, with the reason.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig, free_port
from coordinator.pki import write_pki
from shared.node_runtime.service import NodeNotReady, NodeService
from shared.node_runtime.supervisor import read_state
from shared.schema import Task
from shared.secret_store import KeyStore, materialized_key_path
from tests.enrollment_helpers import write_enrollment
from tests.node_runtime.test_service import _frame
from tests.process_helpers import processes_naming, wait_for

PASSPHRASE = "a long node passphrase"  # noqa: S105 - a test passphrase


def _enroll_encrypted(node_dir: Path, ca_pem: Path, superlink: str) -> bytes:
    """What `retail-node enroll --key-store encrypted` stores, written directly."""
    private_pem, _ = write_enrollment(
        node_dir, ca_pem, superlink, key_store=KeyStore.ENCRYPTED, passphrase=PASSPHRASE
    )
    return private_pem


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_an_encrypted_key_is_materialised_while_running_and_removed_at_stop(
    tmp_path: Path,
) -> None:
    config = CoordinatorConfig(data_dir=tmp_path / "coordinator")
    write_pki(config.pki_dir)
    node_dir = tmp_path / "node"
    pem = _enroll_encrypted(node_dir, config.ca_cert, f"127.0.0.1:{free_port()}")
    service = NodeService(node_dir, backoff_max=2.0)
    service.prepare(_frame(tmp_path), "shop-1", (Task.DEMAND_PRICING,))  # type: ignore[arg-type]
    copy = materialized_key_path(node_dir)

    with pytest.raises(NodeNotReady, match="protected by a passphrase"):
        service.start()
    with pytest.raises(NodeNotReady, match="does not open"):
        service.start("not the passphrase")
    assert not copy.exists() and read_state(node_dir) is None

    service.start(PASSPHRASE)
    try:
        assert copy.read_bytes() == pem
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert wait_for(lambda: (s := read_state(node_dir)) is not None and s.supernode, 60)
        state = read_state(node_dir)
        assert state is not None and state.supernode is not None
        command = _cmdline(state.supernode.pid)
        flag = command.index("--auth-supernode-private-key")
        assert command[flag + 1] == str(copy)
    finally:
        service.stop()
    assert not copy.exists()
    assert (node_dir / "enrollment" / "node.key.enc").exists()  # the stored key stays
    assert wait_for(lambda: not processes_naming(str(node_dir)), 30), processes_naming(
        str(node_dir)
    )
