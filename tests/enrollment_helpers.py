"""What ``retail-node enroll`` stores, written directly: for tests that need an enrolled node
but no coordinator API (the enrollment flow itself is tested in tests/desktop_client)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.enrollment import certificate_fingerprint, generate_keypair
from shared.secret_store import KeyLocation, KeyStore, save_node_key


def write_enrollment(
    node_dir: Path,
    ca_pem: Path,
    superlink: str,
    *,
    retailer_id: int = 1,
    retailer_name: str = "shop-1",
    key_store: KeyStore = KeyStore.FILE,
    passphrase: str | None = None,
) -> tuple[bytes, str]:
    """An enrollment in ``node_dir/enrollment``; returns (private key PEM, public key line)."""
    directory = node_dir / "enrollment"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca_pem.read_bytes())
    private_pem, public_line = generate_keypair()
    save_node_key(KeyLocation(key_store, directory), private_pem, passphrase)
    (directory / "node.pub").write_text(public_line + "\n")
    credentials = {
        "api_url": "http://127.0.0.1:1",
        "access_token": "a",
        "refresh_token": "r",
        "access_expires_at": "2099-01-01T00:00:00+00:00",
        "refresh_expires_at": "2099-01-01T00:00:00+00:00",
        "retailer_id": retailer_id,
        "retailer_name": retailer_name,
        "superlink_address": superlink,
        "ca_fingerprint": certificate_fingerprint(ca_pem.read_bytes()),
        "registration": "registered",
        "key_store": key_store.value,
        "key_id": None,
    }
    (directory / "credentials.json").write_text(json.dumps(credentials))
    return private_pem, public_line
