"""Test-wide settings: Qt runs offscreen and no test touches the real user data directory."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def isolated_node_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands without --data-dir would write to the user's data dir; use a temp dir instead."""
    monkeypatch.setenv("RETAIL_NODE_HOME", str(tmp_path_factory.mktemp("node-home")))
