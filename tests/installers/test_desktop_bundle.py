"""Smoke test of the real desktop bundle: build it with installers/desktop/build.sh, then run
the frozen executable as a retailer's machine would (app self-test, node CLI, node processes).

Building takes 5-30 minutes and a few GB of disk, so it runs only when asked:
    RETAIL_BUILD_INSTALLER=1 pytest tests/installers/test_desktop_bundle.py
RETAIL_INSTALLER_BUILD_DIR sets the build root (default: a fresh temporary directory);
RETAIL_DESKTOP_BUNDLE=PATH/retail-desktop tests an already built executable instead of building.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "installers" / "desktop" / "build.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("RETAIL_BUILD_INSTALLER") != "1",
        reason="builds the PyInstaller bundle (5-30 min, GBs of disk): "
        "set RETAIL_BUILD_INSTALLER=1 to run it",
    ),
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built executable, dist/retail-desktop/retail-desktop under the build root."""
    if prebuilt := os.environ.get("RETAIL_DESKTOP_BUNDLE"):
        assert Path(prebuilt).is_file(), f"RETAIL_DESKTOP_BUNDLE={prebuilt} is not a file"
        return Path(prebuilt)
    root = Path(
        os.environ.get("RETAIL_INSTALLER_BUILD_DIR") or tmp_path_factory.mktemp("installer")
    )
    env = {**os.environ, "PYTHON": sys.executable}
    built = subprocess.run(
        [str(BUILD_SCRIPT), str(root)], env=env, capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-5000:]
    executable = root / "dist" / "retail-desktop" / "retail-desktop"
    assert executable.is_file(), f"build.sh succeeded but made no {executable}"
    return executable


def _run(executable: Path, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "RETAIL_NODE_HOME": str(tmp_path / "node-home"),
        "HOME": str(tmp_path),  # the app's settings and caches stay out of the real home
    }
    return subprocess.run(
        [str(executable), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )


def test_frozen_app_self_test_passes(bundle: Path, tmp_path: Path) -> None:
    """Every page is built and shown, and torch is not loaded before the window appears."""
    result = _run(bundle, "--self-test", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["errors"] == {}
    assert report["pages"]
    assert report["torch_before_window"] is False


def test_frozen_node_cli_answers(bundle: Path, tmp_path: Path) -> None:
    result = _run(bundle, "--node-cli", "--help", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: retail-node")


def test_frozen_node_cli_validates_a_real_export(bundle: Path, tmp_path: Path) -> None:
    """pandas, pyarrow and the bundled taxonomy/header synonyms work inside the bundle."""
    demo = tmp_path / "demo"
    generated = _run(
        bundle, "--node-cli", "generate-demo", str(demo), "--retailers", "1", tmp_path=tmp_path
    )
    assert generated.returncode == 0, generated.stderr[-3000:]
    exports = [p for p in sorted(demo.rglob("*")) if p.suffix in {".csv", ".xlsx", ".parquet"}]
    assert exports, f"generate-demo wrote no export under {demo}"
    checked = _run(bundle, "--node-cli", "validate", str(exports[0]), tmp_path=tmp_path)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]


def test_frozen_runner_trusts_the_campaign_app_the_coordinator_submits(
    bundle: Path, tmp_path: Path
) -> None:
    """The bundled runner builds the campaign FAB from its own copy of coordinator/flower_app;
    its hash must equal the one built from the source tree (what the coordinator submits),
    else the frozen node would refuse every campaign as untrusted."""
    frozen = _run(bundle, "--node-process", "runner", "--print-release", tmp_path=tmp_path)
    assert frozen.returncode == 0, frozen.stderr[-3000:]
    source = subprocess.run(
        [sys.executable, "-m", "shared.node_runtime.flower_runner", "--print-release"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=600,
    )

    def hashes(text: str) -> list[tuple[str, str, str]]:
        releases = json.loads(text)["releases"]
        return [(r["app_id"], r["content_sha256"], r["fab_sha256"]) for r in releases]

    assert hashes(frozen.stdout) == hashes(source.stdout)


@pytest.mark.parametrize(
    ("kind", "expected"), [("supernode", "--superlink"), ("runner", "--runtime-address")]
)
def test_frozen_node_processes_start(
    bundle: Path, tmp_path: Path, kind: str, expected: str
) -> None:
    """What the supervisor runs when frozen: ``retail-desktop --node-process KIND ...``."""
    result = _run(bundle, "--node-process", kind, "--help", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert expected in result.stdout


def _enroll(node_dir: Path, ca_pem: Path, superlink: str) -> None:
    """What `retail-node enroll` stores, written directly."""
    from tests.enrollment_helpers import write_enrollment

    write_enrollment(node_dir, ca_pem, superlink, retailer_id=3, retailer_name="corner-shop")


def test_frozen_join_runs_its_node_processes_from_the_bundle(bundle: Path, tmp_path: Path) -> None:
    """A frozen `join` starts the SuperNode and the runner as `retail-desktop --node-process`,
    they run (the coordinator is not there: the node says it is unreachable), and `leave`
    stops all of them."""
    from coordinator.config import free_port
    from coordinator.pki import write_pki
    from shared.node_runtime.service import NodeService
    from shared.synthetic import generate_demo
    from tests.process_helpers import processes_naming, wait_for

    manifest = generate_demo(tmp_path / "exports", retailers=1, seed=3, scale=0.3)
    node_dir = tmp_path / "node"
    _enroll(node_dir, write_pki(tmp_path / "pki").ca_cert, f"127.0.0.1:{free_port()}")
    env = {**os.environ, "HOME": str(tmp_path), "RETAIL_NODE_HOME": str(tmp_path / "home")}
    join_args = ["join", "--data-dir", str(node_dir), "--consent", "demand_pricing"]
    join_args += ["--data", str(manifest.retailers[0].path)]
    out_path = tmp_path / "join.out"
    with out_path.open("wb") as out:
        join = subprocess.Popen(
            [str(bundle), "--node-cli", *join_args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        service = NodeService(node_dir)
        assert wait_for(lambda: service.status().connection == "unreachable", 120), (
            out_path.read_text()[-3000:]
        )
        pids = service.status().pids
        assert set(pids) == {"owner", "supernode", "runner"}
        for kind in ("supernode", "runner"):
            cmdline = Path(f"/proc/{pids[kind]}/cmdline").read_bytes().split(b"\0")
            assert cmdline[:3] == [str(bundle).encode(), b"--node-process", kind.encode()]
        left = _run(bundle, "--node-cli", "leave", "--data-dir", str(node_dir), tmp_path=tmp_path)
        assert left.returncode == 0, left.stderr[-3000:]
        assert join.wait(60) == 0
    finally:
        if join.poll() is None:
            join.terminate()
            join.wait(30)
    assert "left the federation" in out_path.read_text()
    assert processes_naming(str(node_dir)) == []
