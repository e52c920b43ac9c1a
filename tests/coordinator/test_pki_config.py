"""The coordinator's PKI (CA, server certificate, node keys) and its configuration file."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import ssl
import stat
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from coordinator import config as cfg
from coordinator.config import ConfigError, CoordinatorConfig, free_port
from coordinator.flower_app import APP_DIR
from coordinator.flower_control import InvalidNodeKey, node_key_bytes
from coordinator.pki import (
    create_ca,
    fingerprint,
    generate_node_keypair,
    issue_server_certificate,
    write_pki,
)

# -- PKI --------------------------------------------------------------------------------------


def test_server_certificate_chains_to_the_ca_for_loopback(tmp_path: Path) -> None:
    paths = write_pki(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())

    verifier = (
        PolicyBuilder()
        .store(Store([ca]))
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    )
    chain = verifier.verify(server, [])
    assert chain[-1] == ca
    localhost = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("localhost"))
    localhost.verify(server, [])

    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server_days = (server.not_valid_after_utc - server.not_valid_before_utc).days
    ca_days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert 729 <= server_days <= 731
    assert 3649 <= ca_days <= 3651

    # Python's ssl (what httpx and uvicorn use) accepts the pair as server and client ends.
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(paths.server_cert, paths.server_key)
    client_side = ssl.create_default_context(cafile=str(paths.ca_cert))
    assert client_side.verify_mode == ssl.CERT_REQUIRED


def test_issue_for_extra_hosts_uses_ip_and_dns_names() -> None:
    ca_key, ca_cert = create_ca("Test CA")
    _, cert = issue_server_certificate(ca_key, ca_cert, ("coordinator.example", "10.0.0.7"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["coordinator.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    with pytest.raises(ValueError, match="at least one host"):
        issue_server_certificate(ca_key, ca_cert, ())


def test_private_keys_are_owner_only_and_existing_pki_is_kept(tmp_path: Path) -> None:
    paths = write_pki(tmp_path)
    for key in (paths.server_key, paths.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = paths.ca_cert.read_bytes()

    with pytest.raises(FileExistsError, match=r"ca\.pem"):
        write_pki(tmp_path)
    assert paths.ca_cert.read_bytes() == before

    replaced = write_pki(tmp_path, force=True)
    assert replaced.ca_cert.read_bytes() != before
    assert stat.S_IMODE(replaced.server_key.stat().st_mode) == 0o600


def test_fingerprint_is_colon_separated_sha256(tmp_path: Path) -> None:
    paths = write_pki(tmp_path)
    pem = paths.ca_cert.read_bytes()
    value = fingerprint(pem)
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", value)
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert value.replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    assert fingerprint(paths.server_cert.read_bytes()) != value


def test_node_keypair_is_openssh_p384_as_flower_needs() -> None:
    private_pem, public_line = generate_node_keypair()
    assert private_pem.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public_line.startswith("ecdsa-sha2-nistp384 ")
    private = serialization.load_ssh_private_key(private_pem, password=None)
    public = serialization.load_ssh_public_key(public_line.encode())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP384R1)
    assert private.public_key().public_numbers() == public.public_numbers()
    # what the Control API is sent: the key as PEM, after the CLI's own checks
    assert node_key_bytes(public_line).startswith(b"-----BEGIN PUBLIC KEY-----")
    _, commented = generate_node_keypair("shop-17")
    assert commented.endswith(" shop-17")
    assert node_key_bytes(commented)


@pytest.mark.parametrize(
    "line",
    ["", "not a key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2sga2V5IG1vY2sga2V5IG1vY2sga2V5"],
)
def test_node_key_that_flower_would_refuse_is_refused_before_sending(line: str) -> None:
    with pytest.raises(InvalidNodeKey):
        node_key_bytes(line)


# -- configuration ----------------------------------------------------------------------------


def test_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    config = CoordinatorConfig(data_dir=tmp_path)
    assert config.api_host == config.superlink_host == "127.0.0.1"
    assert config.api_port == config.superlink_port == 0
    assert config.database_url == f"sqlite:///{tmp_path}/coordinator.sqlite"
    assert config.models_dir == tmp_path / "models"
    assert config.pki.ca_cert == tmp_path / "pki" / "ca.pem"
    assert config.pki.server_key == tmp_path / "pki" / "server.key"
    assert config.superlink_database.is_relative_to(tmp_path)
    assert (config.aggregate_retention_days, config.audit_retention_days) == (90, 2555)
    assert (config.access_token_minutes, config.refresh_token_days) == (60, 30)
    assert config.enrollment_attempts_per_minute == 10
    assert config.log_json is False


def test_save_then_load_round_trips_and_keeps_paths_relative(tmp_path: Path) -> None:
    config = CoordinatorConfig(
        data_dir=tmp_path,
        api_port=8443,
        superlink_port=9092,
        database_url='postgresql://coord:p"w\\x@db.local/retail',
        models_dir=Path("/srv/models"),
        log_json=True,
        audit_retention_days=3650,
    )
    written = cfg.save(config)
    assert written == tmp_path / "coordinator.toml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    raw = tomllib.loads(written.read_text("utf-8"))
    assert raw["ca_cert"] == "pki/ca.pem"  # inside the data dir: relative, movable
    assert raw["models_dir"] == "/srv/models"
    assert cfg.load(tmp_path) == config

    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "coordinator.toml").write_text(written.read_text("utf-8"), "utf-8")
    assert cfg.load(moved).ca_cert == moved / "pki" / "ca.pem"


def test_default_database_url_follows_the_data_dir(tmp_path: Path) -> None:
    cfg.save(CoordinatorConfig(data_dir=tmp_path))
    assert "database_url" not in tomllib.loads((tmp_path / "coordinator.toml").read_text())
    assert cfg.load(tmp_path) == CoordinatorConfig(data_dir=tmp_path)


def test_missing_keys_take_defaults(tmp_path: Path) -> None:
    (tmp_path / "coordinator.toml").write_text("api_port = 8080\n", "utf-8")
    loaded = cfg.load(tmp_path)
    assert loaded == CoordinatorConfig(data_dir=tmp_path, api_port=8080)


def test_database_url_from_the_environment_wins_and_is_not_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg.save(CoordinatorConfig(data_dir=tmp_path, database_url="sqlite:////elsewhere.db"))
    monkeypatch.setenv(cfg.DATABASE_URL_ENV, "postgresql://u:secret@db/retail")
    loaded = cfg.load(tmp_path)
    assert loaded.database_url == "postgresql://u:secret@db/retail"
    assert loaded.database_url_from_env
    cfg.save(loaded)
    assert "secret" not in (tmp_path / "coordinator.toml").read_text("utf-8")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api_port = 70000\n", "'api_port'.*0..65535"),
        ('api_port = "80"\n', "'api_port' must be an integer"),
        ("log_json = 1\n", "'log_json' must be true or false"),
        ("superlink_port = true\n", "'superlink_port' must be an integer"),
        ("audit_retention_days = 0\n", "'audit_retention_days'"),
        ('database_url = "coordinator.sqlite"\n', "'database_url'.*URL"),
        ("ca_cert = 3\n", "'ca_cert' must be a string"),
        ("api_prot = 80\n", "unknown key 'api_prot'"),
        ("api_port = \n", "not valid TOML"),
    ],
)
def test_bad_file_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "coordinator.toml").write_text(text, "utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        cfg.load(tmp_path)
    assert str(tmp_path / "coordinator.toml") in str(info.value)


def test_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"coordinator\.toml not found"):
        cfg.load(tmp_path)


def test_invalid_values_are_refused_in_code_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api_port"):
        CoordinatorConfig(data_dir=tmp_path, api_port=-1)


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -- the Flower app the coordinator submits ---------------------------------------------------


def test_flower_app_defaults_match_run_settings() -> None:
    from shared import __version__
    from shared.federation.settings import RunSettings

    project = tomllib.loads((APP_DIR / "pyproject.toml").read_text("utf-8"))
    app = project["tool"]["flwr"]["app"]
    assert app["components"] == {
        "serverapp": "coordinator.flower_app.server:app",
        "clientapp": "shared.federation.client_app:app",
    }
    expected = {"campaign-id": 0, **RunSettings().to_run_config()}
    assert app["config"] == expected
    assert project["project"]["version"] == __version__
