"""Keyring backends for tests: no Secret Service runs here, and no test may touch a real one.

``use_test_keyring`` installs keyrings.alt's plain-text file keyring (the ``dev`` extra) in a
temporary XDG data directory, chosen explicitly as a real user would in ``keyringrc.cfg``;
``use_no_keyring`` installs keyring's own fail backend, what a headless Linux box without a
Secret Service resolves to. Both undo themselves through ``monkeypatch``.
"""

from __future__ import annotations

from pathlib import Path

import keyring
import keyring.core
import pytest
from keyring.backends import fail

TEST_BACKEND = "keyrings.alt.file.PlaintextKeyring"


def use_test_keyring(monkeypatch: pytest.MonkeyPatch, directory: Path) -> object:
    """A working file keyring under ``directory``; returns the backend."""
    monkeypatch.setenv("XDG_DATA_HOME", str(directory))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", TEST_BACKEND)
    backend = keyring.core.load_env()
    assert backend is not None
    monkeypatch.setattr(keyring.core, "_keyring_backend", backend)
    return backend


def use_no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """No usable password store, as on a server without a Secret Service."""
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setattr(keyring.core, "_keyring_backend", fail.Keyring())
