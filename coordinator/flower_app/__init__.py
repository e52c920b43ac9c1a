"""The Flower App the coordinator submits as a campaign run (``pyproject.toml`` beside this file).

Its ServerApp is ``coordinator.flower_app.server:app`` and its ClientApp
``shared.federation.client_app:app``; both are imported from the installed packages, not from
the FAB, because the FAB only holds this directory.
"""

from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
