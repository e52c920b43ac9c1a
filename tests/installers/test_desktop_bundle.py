"""Smoke test of the real desktop bundle: build it with installers/desktop/build.sh, then run
the frozen executable as a retailer's machine would (app self-test, node CLI, node processes).

Building takes 5-30 minutes and a few GB of disk, so it runs only when asked:
    RETAIL_BUILD_INSTALLER=1 pytest tests/installers/test_desktop_bundle.py
RETAIL_INSTALLER_BUILD_DIR reuses a build root (default: a fresh temporary directory).
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
    result = _run(bundle, "--self-test", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr


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
