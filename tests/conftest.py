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


# With ``pytest -n 2 --dist loadgroup`` (``make test``): tests that start real federations run one
# after another on one worker (two at once would starve each other on 2 cores and time out);
# Qt tests share one worker (they share the user's QSettings); the simulation engine's tests
# (ray) another group. Everything else is spread over both workers.
_GROUPS = (
    ("processes", ("tests/e2e/", "tests/node_runtime/", "tests/coordinator/test_daemon",
                   "tests/coordinator/test_superlink", "tests/desktop_client/test_join_cli",
                   "tests/installers/test_desktop_bundle")),
    ("qt", ("tests/desktop_client/gui/", "tests/desktop_client/test_app",
            "tests/desktop_client/test_reports_viewmodel",
            "tests/desktop_client/test_insights_viewmodel")),
    ("ray", ("tests/shared/test_federation_", "tests/shared/insights/test_market_bundles")),
)  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = str(config.rootpath)
    for item in items:
        path = str(item.path)[len(root) + 1 :]
        for group, prefixes in _GROUPS:
            if path.startswith(prefixes):
                item.add_marker(pytest.mark.xdist_group(group))
                break
