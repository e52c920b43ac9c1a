"""What every page of the desktop app shares: the node directory, the mode and the settings.

Why one object: pages must not find the node directory or the settings each in their own way,
and the store manager's view-only mode has to be one flag every page can read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

ORGANIZATION = "Retail Intelligence"
APPLICATION = "retail-desktop"


class AppSignals(QObject):
    """Cross-page notifications (a page emits, others refresh); no payload logic lives here."""

    enrollment_changed = Signal()
    data_changed = Signal()
    consent_changed = Signal()
    insights_changed = Signal()


@dataclass
class AppContext:
    """Handed to every page's constructor: ``Page(context, parent=None)``."""

    node_dir: Path
    viewer: bool = False  # store manager's view-only mode: no consent, data or training changes
    settings: QSettings = field(default_factory=lambda: QSettings(ORGANIZATION, APPLICATION))
    signals: AppSignals = field(default_factory=AppSignals)
