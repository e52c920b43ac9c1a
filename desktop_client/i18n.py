"""Translations: the app's own ``.qm`` files and Qt's, for the system locale, when present.

Why at start-up only: Qt looks strings up when a widget is built, and every page is built
after the window starts, so installing the translators before the first window is enough.
No translation ships yet; English source strings are shown then.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QCoreApplication, QLibraryInfo, QLocale, QTranslator

TRANSLATIONS_DIR = Path(__file__).with_name("translations")


def install_translators(
    app: QCoreApplication, locale: QLocale | None = None, directory: Path = TRANSLATIONS_DIR
) -> list[QTranslator]:
    """Install Qt's and the app's translators for ``locale`` (default: the system's); returns
    the ones that loaded (they must stay referenced while the app runs)."""
    locale = locale or QLocale.system()
    installed: list[QTranslator] = []
    candidates = (
        ("qtbase", "_", QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)),
        ("retail_desktop", "_", str(directory)),
    )
    for name, prefix, folder in candidates:
        translator = QTranslator(app)
        if translator.load(locale, name, prefix, folder) and app.installTranslator(translator):
            installed.append(translator)
    return installed
