from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.cli import main
from shared.taxonomy import load_taxonomy


def test_taxonomy_json_is_the_shipped_taxonomy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "taxonomy.json"
    assert main(["taxonomy", "--json", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    taxonomy = load_taxonomy()
    assert printed["version"] == taxonomy.version
    assert [c["code"] for c in printed["categories"]] == list(taxonomy.codes)
    assert load_taxonomy(out).codes == taxonomy.codes


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
