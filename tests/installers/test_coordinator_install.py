"""The coordinator's install recipes cannot drift from the code they run.

The systemd unit and the Dockerfile are not exercised here (no systemd or Docker engine in CI),
so what they say about the program is checked against the program: the flags they pass exist
in ``retail-coordinator serve --help``, the image's torch is the project's pin, the health check
probes the port the image exposes and the init script configures, the env example lists every
variable the code reads, and the init script really produces a data directory ``serve`` loads.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from coordinator import cli
from coordinator.config import load

REPO = Path(__file__).resolve().parents[2]
INSTALL_DIR = REPO / "installers" / "coordinator"
UNIT = INSTALL_DIR / "retail-coordinator.service"
DOCKERFILE = INSTALL_DIR / "Dockerfile"
ENV_EXAMPLE = INSTALL_DIR / "coordinator.env.example"
INIT_SCRIPT = INSTALL_DIR / "init-data-dir.sh"


def _serve_flags(capsys: pytest.CaptureFixture[str]) -> set[str]:
    with pytest.raises(SystemExit) as stop:
        cli.main(["serve", "--help"])
    assert stop.value.code == 0
    return set(re.findall(r"--[a-z][a-z-]*", capsys.readouterr().out))


def _unit_value(key: str) -> str:
    values = [
        line.split("=", 1)[1].strip()
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]
    assert len(values) == 1, f"{UNIT.name}: {key}= appears {len(values)} times"
    return values[0]


def _docker_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _json_args(arguments: str) -> list[str]:
    import json

    parsed = json.loads(arguments)
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def test_unit_runs_serve_with_flags_the_cli_has(capsys: pytest.CaptureFixture[str]) -> None:
    command = shlex.split(_unit_value("ExecStart"))
    assert command[0].endswith("/bin/retail-coordinator")
    assert command[1] == "serve"
    used = {arg for arg in command[2:] if arg.startswith("--")}
    assert "--data-dir" in used
    assert used <= _serve_flags(capsys)
    data_dir = command[command.index("--data-dir") + 1]
    # The data directory is the one systemd creates and lets the hardened service write.
    assert data_dir == "/var/lib/" + _unit_value("StateDirectory")
    assert data_dir in _unit_value("ReadWritePaths").split()


def test_unit_stops_the_daemon_gracefully() -> None:
    """SIGTERM to the daemon only (it stops its SuperLink itself), SIGKILL after the timeout."""
    assert _unit_value("KillMode") == "mixed"
    assert _unit_value("KillSignal") == "SIGTERM"
    assert int(_unit_value("TimeoutStopSec")) >= 30
    assert _unit_value("User") != "root"
    for hardening in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert _unit_value(hardening) == "yes"
    assert _unit_value("ProtectSystem") == "strict"


def test_container_runs_serve_with_flags_the_cli_has(capsys: pytest.CaptureFixture[str]) -> None:
    instructions = _docker_instructions()
    cmds = [_json_args(args) for word, args in instructions if word == "CMD"]
    assert len(cmds) == 1
    command = cmds[0]
    assert command[:2] == ["retail-coordinator", "serve"]
    assert {arg for arg in command if arg.startswith("--")} <= _serve_flags(capsys)
    volumes = [_json_args(args) for word, args in instructions if word == "VOLUME"]
    assert [command[command.index("--data-dir") + 1]] in volumes
    users = [args for word, args in instructions if word == "USER"]
    assert users and not users[-1].startswith(("root", "0"))


def test_container_installs_the_pinned_cpu_torch() -> None:
    with (REPO / "pyproject.toml").open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    pins = [dep for dep in dependencies if re.match(r"torch\s*==", dep)]
    assert len(pins) == 1
    runs = " ".join(args for word, args in _docker_instructions() if word == "RUN")
    assert "--index-url https://download.pytorch.org/whl/cpu " + pins[0].replace(" ", "") in runs


def test_health_check_probes_the_exposed_api_port() -> None:
    instructions = _docker_instructions()
    exposed = " ".join(args for word, args in instructions if word == "EXPOSE").split()
    health = " ".join(args for word, args in instructions if word == "HEALTHCHECK")
    probed = re.search(r"http://127\.0\.0\.1:(\d+)/healthz", health)
    assert probed is not None
    assert probed.group(1) in exposed
    # ...and that is the API port the init script writes into coordinator.toml by default.
    assert f"api_port=${{3:-{probed.group(1)}}}" in INIT_SCRIPT.read_text()


def _variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    patterns = (
        r"""os\.environ(?:\.get|\.setdefault|\.pop)?[\(\[]\s*["']([A-Z][A-Z0-9_]+)["']""",
        r"""_ENV\s*(?::\s*str\s*)?=\s*["']([A-Z][A-Z0-9_]+)["']""",
    )
    for package in ("coordinator", "shared"):
        for source in (REPO / package).rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            for pattern in patterns:
                names.update(re.findall(pattern, text))
    return names


def test_env_example_names_every_variable_the_code_reads() -> None:
    variables = _variables_read_by_the_code()
    assert "RETAIL_COORDINATOR_DATABASE_URL" in variables  # the scan itself works
    example = ENV_EXAMPLE.read_text()
    missing = sorted(name for name in variables if name not in example)
    assert not missing, f"add to {ENV_EXAMPLE.name}: {missing}"


def _coordinator_executable() -> str:
    candidate = Path(sys.executable).parent / "retail-coordinator"
    if not candidate.exists():
        pytest.fail(f"retail-coordinator is not installed next to {sys.executable}")
    return str(candidate)


def test_init_script_makes_a_data_dir_serve_can_load(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        ["sh", str(INIT_SCRIPT), str(data_dir), "127.0.0.1", "18080", "localhost", "19092"],
        env={**os.environ, "RETAIL_COORDINATOR": _coordinator_executable()},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CA fingerprint" in result.stdout  # init's own output reaches the operator
    config = load(data_dir)
    assert (config.api_host, config.api_port) == ("127.0.0.1", 18080)
    assert (config.superlink_host, config.superlink_port) == ("localhost", 19092)
    assert config.ca_cert.is_file()


@pytest.mark.parametrize(
    "args",
    [["127.0.0.1", "80a"], ["127.0.0.1", "70000"], ["host name"], ["127.0.0.1", "8080", "a;b"]],
)
def test_init_script_refuses_bad_addresses_before_initialising(
    tmp_path: Path, args: list[str]
) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        ["sh", str(INIT_SCRIPT), str(data_dir), *args],
        env={**os.environ, "RETAIL_COORDINATOR": _coordinator_executable()},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip()
    assert not data_dir.exists()
