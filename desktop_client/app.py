"""``retail-desktop``: start the Qt app. Heavy libraries (torch) are never imported here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retail-desktop", description="Retail Intelligence app")
    parser.add_argument(
        "--self-test", action="store_true", help="open and close the window, then exit 0"
    )
    args, qt_args = parser.parse_known_args(argv)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from desktop_client.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    window = MainWindow()
    window.show()
    if args.self_test:
        QTimer.singleShot(0, app.quit)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
