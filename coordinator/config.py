"""The coordinator's settings: one flat TOML file, ``coordinator.toml``, in its data directory.

Relative paths in the file are read relative to the data directory, and paths inside it are
written relative, so a data directory can be moved or restored from a backup as a whole. The
database URL may come from the environment (``RETAIL_COORDINATOR_DATABASE_URL``) so that a
PostgreSQL password never has to sit in the file; the supervised SuperLink passes the same
variable on to the ServerApp process it starts.

The file is written by the small writer below (flat keys of str, int, float, bool, with
comments), not ``tomli_w``: the file is meant to be read and edited by an operator.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from coordinator.pki import CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, PkiPaths

CONFIG_FILE = "coordinator.toml"
DATABASE_URL_ENV = "RETAIL_COORDINATOR_DATABASE_URL"
_LOOPBACK = "127.0.0.1"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or holds a bad value (message names the
    file and the key)."""


@dataclass(frozen=True)
class CoordinatorConfig:
    """Everything the daemon needs to start. Ports 0 mean "pick a free port at start"."""

    data_dir: Path
    api_host: str = _LOOPBACK
    api_port: int = 0
    superlink_host: str = _LOOPBACK
    superlink_port: int = 0
    # "" means the embedded default: sqlite:///<data_dir>/coordinator.sqlite
    database_url: str = ""
    models_dir: Path = Path("models")
    ca_cert: Path = Path("pki") / CA_CERT_FILE
    server_cert: Path = Path("pki") / SERVER_CERT_FILE
    server_key: Path = Path("pki") / SERVER_KEY_FILE
    ca_key: Path = Path("pki") / CA_KEY_FILE
    superlink_database: Path = Path("superlink") / "state.sqlite"
    aggregate_retention_days: int = 90
    audit_retention_days: int = 2555  # seven years
    access_token_minutes: int = 60
    refresh_token_days: int = 30
    enrollment_attempts_per_minute: int = 10
    log_json: bool = False
    # True when database_url came from RETAIL_COORDINATOR_DATABASE_URL: save() then leaves it
    # out of the file, so a password given in the environment is not copied to disk.
    database_url_from_env: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        data_dir = Path(self.data_dir).expanduser().absolute()
        object.__setattr__(self, "data_dir", data_dir)
        for key in _PATH_KEYS:
            path = Path(getattr(self, key)).expanduser()
            object.__setattr__(self, key, path if path.is_absolute() else data_dir / path)
        if not self.database_url:
            object.__setattr__(self, "database_url", default_database_url(data_dir))
        for message in _problems(self):
            raise ConfigError(message)

    @property
    def config_file(self) -> Path:
        return self.data_dir / CONFIG_FILE

    @property
    def pki(self) -> PkiPaths:
        return PkiPaths(
            ca_cert=self.ca_cert,
            server_cert=self.server_cert,
            server_key=self.server_key,
            ca_key=self.ca_key,
        )

    @property
    def pki_dir(self) -> Path:
        """The CA certificate's directory: ``write_pki(config.pki_dir)`` creates the files
        this config names as long as they keep the standard names (the defaults)."""
        return self.ca_cert.parent

    def with_ports(
        self, *, api_port: int | None = None, superlink_port: int | None = None
    ) -> CoordinatorConfig:
        """A copy with ports fixed (e.g. the free ports chosen at start)."""
        return replace(
            self,
            api_port=self.api_port if api_port is None else api_port,
            superlink_port=self.superlink_port if superlink_port is None else superlink_port,
        )


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'coordinator.sqlite'}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; another process could still
    take it before it is bound, which the caller notices as a failed start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# key -> (type, check, what the check requires); bool is kept apart from int on purpose.
_INT_RULES: dict[str, tuple[int, int]] = {
    "api_port": (0, 65535),
    "superlink_port": (0, 65535),
    "aggregate_retention_days": (1, 36500),
    "audit_retention_days": (1, 36500),
    "access_token_minutes": (1, 24 * 60),
    "refresh_token_days": (1, 3650),
    "enrollment_attempts_per_minute": (1, 100_000),
}
_STR_KEYS = ("api_host", "superlink_host", "database_url")
_PATH_KEYS = (
    "models_dir",
    "ca_cert",
    "server_cert",
    "server_key",
    "ca_key",
    "superlink_database",
)
_BOOL_KEYS = ("log_json",)
_FILE_KEYS = (*_STR_KEYS, *_INT_RULES, *_PATH_KEYS, *_BOOL_KEYS)


def _problems(config: CoordinatorConfig) -> list[str]:
    problems = []
    for key, (low, high) in _INT_RULES.items():
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{key}: expected an integer {low}..{high}, got {value!r}")
    for key in ("api_host", "superlink_host"):
        value = getattr(config, key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{key}: expected a host name or address, got {value!r}")
    if not isinstance(config.log_json, bool):
        problems.append(f"log_json: expected true or false, got {config.log_json!r}")
    if "://" not in config.database_url:
        problems.append(
            f"database_url: expected a URL such as sqlite:///path or "
            f"postgresql://host/db, got {config.database_url!r}"
        )
    return problems


def _from_toml(data_dir: Path, path: Path, raw: dict[str, Any]) -> CoordinatorConfig:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _FILE_KEYS:
            known = ", ".join(sorted(_FILE_KEYS))
            raise ConfigError(f"{path}: unknown key {key!r} (known keys: {known})")
        if key in _PATH_KEYS or key in _STR_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{path}: key {key!r} must be a string, got {value!r}")
            values[key] = Path(value) if key in _PATH_KEYS else value
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: key {key!r} must be true or false, got {value!r}")
            values[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{path}: key {key!r} must be an integer, got {value!r}")
            values[key] = value
    try:
        return CoordinatorConfig(data_dir=data_dir, **values)
    except ConfigError as exc:
        key = str(exc).split(":", 1)[0]
        raise ConfigError(f"{path}: key {key!r}: {str(exc).split(':', 1)[1].strip()}") from None


def load(data_dir: Path) -> CoordinatorConfig:
    """Read ``<data_dir>/coordinator.toml``; missing keys take their defaults.

    ``RETAIL_COORDINATOR_DATABASE_URL``, when set and non-empty, replaces ``database_url``.
    """
    data_dir = Path(data_dir).expanduser().absolute()
    path = data_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found: initialise the coordinator's data directory first"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = _from_toml(data_dir, path, raw)
    if env_url := os.environ.get(DATABASE_URL_ENV, "").strip():
        try:
            config = replace(config, database_url=env_url, database_url_from_env=True)
        except ConfigError as exc:
            raise ConfigError(f"{DATABASE_URL_ENV}: {exc}") from None
    return config


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # JSON string escapes (\" \\ \n \t \uXXXX ...) are all valid in TOML basic strings.
    return json.dumps(str(value), ensure_ascii=False)


def _stored_path(config: CoordinatorConfig, path: Path) -> str:
    return (
        str(path.relative_to(config.data_dir))
        if path.is_relative_to(config.data_dir)
        else (str(path))
    )


_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP API (port 0: a free port is chosen at every start)", ("api_host", "api_port")),
    (
        "Flower SuperLink (Fleet, Control and ServerApp APIs on one TLS port)",
        (
            "superlink_host",
            "superlink_port",
            "superlink_database",
        ),
    ),
    (
        "Storage (relative paths are inside this data directory). The database URL may also come "
        f"from {DATABASE_URL_ENV}",
        ("database_url", "models_dir"),
    ),
    (
        "TLS: the CA retailers pin, and the SuperLink's certificate",
        (
            "ca_cert",
            "ca_key",
            "server_cert",
            "server_key",
        ),
    ),
    (
        "Retention and access",
        (
            "aggregate_retention_days",
            "audit_retention_days",
            "access_token_minutes",
            "refresh_token_days",
            "enrollment_attempts_per_minute",
        ),
    ),
    ("Logging", ("log_json",)),
)


def dumps(config: CoordinatorConfig) -> str:
    """The TOML text for ``config``. The default database URL is written as a comment (so it
    follows the data directory if that moves), as is a URL that came from the environment."""
    lines = ["# Retail Intelligence coordinator settings", ""]
    for title, keys in _SECTIONS:
        lines.append(f"# {title}")
        for key in keys:
            value = getattr(config, key)
            if key == "database_url" and config.database_url_from_env:
                lines.append(f"# database_url: taken from {DATABASE_URL_ENV}")
                continue
            if key == "database_url" and value == default_database_url(config.data_dir):
                lines.append(f"# database_url = {_toml_value(value)}")
                continue
            if isinstance(value, Path):
                value = _stored_path(config, value)
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def save(config: CoordinatorConfig) -> Path:
    """Write ``coordinator.toml`` (0600: it may hold a database URL with a password)."""
    from coordinator.pki import write_private_file

    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = config.config_file
    tmp = path.with_suffix(".toml.tmp")
    write_private_file(tmp, dumps(config).encode("utf-8"))
    tmp.replace(path)
    return path
