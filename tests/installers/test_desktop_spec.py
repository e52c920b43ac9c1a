"""Fast checks of the desktop bundle's recipe and of the frozen entry's routing (no build).

The spec is read as Python source, not executed: executing it runs PyInstaller's module
collection, which imports every module of the app (minutes). What can drift silently is checked
here: the entry script, the data files the app reads at run time, and the campaign app's files
the trusted runner hashes (a file missing from the bundle would make every campaign untrusted).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from desktop_client import frozen_entry

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "installers" / "desktop" / "retail-desktop.spec"
ENTRY = REPO / "installers" / "desktop" / "entry.py"


def _repo_path(node: ast.AST) -> Path | None:
    """``REPO / "a" / "b"`` in the spec's source as the path it names, else None."""
    parts: list[str] = []
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        if not (isinstance(node.right, ast.Constant) and isinstance(node.right.value, str)):
            return None
        parts.append(node.right.value)
        node = node.left
    if isinstance(node, ast.Name) and node.id == "REPO" and parts:
        return REPO.joinpath(*reversed(parts))
    return None


def _spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return node.value
    raise AssertionError(f"{SPEC.name} assigns no {name}")


def _bundled_data() -> dict[Path, str]:
    """The spec's ``DATAS`` list: source file -> folder inside the bundle."""
    datas = _assigned(_spec_tree(), "DATAS")
    assert isinstance(datas, ast.List)
    out: dict[Path, str] = {}
    for item in datas.elts:
        assert isinstance(item, ast.Tuple) and len(item.elts) == 2, ast.unparse(item)
        source = item.elts[0]
        if isinstance(source, ast.Call) and source.args:  # str(REPO / ...)
            source = source.args[0]
        path = _repo_path(source)
        target = item.elts[1]
        assert path is not None, f"not a REPO path: {ast.unparse(item)}"
        assert isinstance(target, ast.Constant) and isinstance(target.value, str)
        out[path] = target.value
    return out


def test_spec_is_python_and_builds_from_the_entry_script() -> None:
    tree = _spec_tree()
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    analysis = [c for c in calls if c.func.id == "Analysis"]  # type: ignore[attr-defined]
    assert len(analysis) == 1
    scripts = analysis[0].args[0]
    assert isinstance(scripts, ast.List) and len(scripts.elts) == 1
    script = scripts.elts[0]
    assert isinstance(script, ast.Call)
    assert _repo_path(script.args[0]) == ENTRY
    assert ENTRY.is_file()
    # The entry script is only the shell around desktop_client.frozen_entry.main.
    entry_imports = {
        node.module
        for node in ast.walk(ast.parse(ENTRY.read_text()))
        if isinstance(node, ast.ImportFrom)
    }
    assert "desktop_client.frozen_entry" in entry_imports
    names = {c.func.id for c in calls}  # type: ignore[attr-defined]
    assert {"PYZ", "EXE", "COLLECT"} <= names


def test_every_bundled_file_exists() -> None:
    bundled = _bundled_data()
    missing = [str(path.relative_to(REPO)) for path in bundled if not path.is_file()]
    assert not missing


def test_runtime_data_and_the_whole_campaign_app_are_bundled_in_place() -> None:
    """The bundle holds every shared/data file and every file of coordinator/flower_app, each in
    the folder of the same name: the runner builds the campaign FAB from that folder, and its
    hash must equal the one the coordinator submits."""
    bundled = _bundled_data()
    app_dir = REPO / "coordinator" / "flower_app"
    needed = [*sorted((REPO / "shared" / "data").glob("*.json"))]
    needed += [
        p for p in sorted(app_dir.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
    ]
    assert needed, "nothing to check: the package data moved"
    for path in needed:
        folder = path.parent.relative_to(REPO).as_posix()
        assert bundled.get(path) == folder, f"{path.relative_to(REPO)} not bundled in {folder}"


def test_node_cli_help_is_routed_to_retail_node(capsys: pytest.CaptureFixture[str]) -> None:
    code = frozen_entry.main(["--node-cli", "--help"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("usage: retail-node")
    assert "validate" in out


def test_node_cli_errors_keep_their_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code = frozen_entry.main(["--node-cli", "no-such-command"])
    assert code == 2  # argparse's usage error
    assert "retail-node" in capsys.readouterr().err


def test_node_process_is_routed_to_the_launcher(capsys: pytest.CaptureFixture[str]) -> None:
    code = frozen_entry.main(["--node-process", "runner", "--help"])
    out = capsys.readouterr().out
    assert code == 0
    assert "--runtime-address" in out  # the trusted runner's own options
    assert frozen_entry.main(["--node-process", "no-such-kind"]) == 2
    assert "supernode" in capsys.readouterr().err


def test_anything_else_starts_the_desktop_app(capsys: pytest.CaptureFixture[str]) -> None:
    code = frozen_entry.main(["--help"])  # the app's parser answers; no window is opened
    assert code == 0
    assert capsys.readouterr().out.startswith("usage: retail-desktop")


@pytest.mark.parametrize(
    ("code", "expected", "stderr"),
    [(None, 0, ""), (0, 0, ""), (3, 3, ""), ("cannot start: no display", 1, "no display")],
)
def test_sys_exit_values_become_exit_codes(
    code: int | str | None, expected: int, stderr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert frozen_entry._exit_code(SystemExit(code)) == expected
    assert stderr in capsys.readouterr().err
