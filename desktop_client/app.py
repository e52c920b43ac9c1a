"""``retail-desktop``: start the Qt app. Heavy libraries (torch) are never imported here.

    retail-desktop [--data-dir DIR] [--viewer] [--self-test]

The node directory is ``--data-dir``, else ``$RETAIL_NODE_HOME``, else the platform's user data
directory (``NodeHome.locate``). ``--viewer`` is the store manager's view: Insights and Reports
only, from the local insight store, with no credentials or network needed and nothing that
changes consent, data or training (give a manager a shortcut that starts it, or use File → Open
store-manager view). ``--self-test`` opens every page once and prints a one-line JSON summary;
the exit code is 0 only when every page built without error (the installer's smoke test).
With ``RETAIL_DESKTOP_TIMING=1`` the app prints ``{"window_shown": EPOCH_SECONDS}`` when the
window is first on screen (the start-up benchmark reads it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Qt is imported only once the arguments are read
    from collections.abc import Callable

    from PySide6.QtWidgets import QApplication

    from desktop_client.gui.main_window import MainWindow

    ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("desktop_client")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-desktop",
        description="Retail Intelligence: learn from your sales together with other shops.",
    )
    parser.add_argument("--data-dir", type=Path, help="this node's data directory")
    parser.add_argument(
        "--viewer",
        action="store_true",
        help="store manager's view: Insights and Reports only, offline, changes nothing",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="open every page once, print a JSON summary, exit 0 when all pages work",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, qt_args = _parser().parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from PySide6.QtWidgets import QApplication

    from desktop_client.gui.context import APPLICATION, ORGANIZATION, AppContext
    from desktop_client.gui.main_window import MainWindow
    from desktop_client.i18n import install_translators
    from desktop_client.node_home import NodeHome

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *qt_args])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    translators = install_translators(app)  # noqa: F841 - must stay referenced while running
    node_dir = NodeHome.locate(args.data_dir).root
    window = MainWindow(AppContext(node_dir=node_dir, viewer=args.viewer))
    if os.environ.get("RETAIL_DESKTOP_TIMING") == "1":
        window.first_shown.connect(lambda at: print(json.dumps({"window_shown": at}), flush=True))
    if args.self_test:
        return _self_test(app, window)
    previous_hook = sys.excepthook
    sys.excepthook = _excepthook_for(window)
    window.show()
    try:
        return int(app.exec())
    finally:
        sys.excepthook = previous_hook
        _teardown(app, window)


def _self_test(app: QApplication, window: MainWindow) -> int:
    from PySide6.QtCore import QTimer

    from desktop_client.gui.self_test import SelfTestReport, walk_pages

    report = SelfTestReport(viewer=window.context.viewer)

    def first_shown(_at: float) -> None:
        report.torch_before_window = "torch" in sys.modules

    def walk() -> None:
        walk_pages(window, report)
        print(json.dumps(report.to_json(), ensure_ascii=False), flush=True)
        window.close()
        app.quit()

    window.first_shown.connect(first_shown)
    window.show()
    QTimer.singleShot(0, walk)
    app.exec()
    _teardown(app, window)
    return EXIT_OK if report.ok else EXIT_FAILED


def _teardown(app: QApplication, window: MainWindow) -> None:
    """Let background jobs finish and delete the widgets while Qt still runs: left to the
    interpreter's exit, a worker or a widget could be collected after Qt is gone (a crash)."""
    import shiboken6
    from PySide6.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    pool.clear()
    pool.waitForDone(30_000)
    app.processEvents()
    if shiboken6.isValid(window):
        shiboken6.delete(window)
    app.processEvents()


def _excepthook_for(window: MainWindow) -> ExceptHook:
    """An error in a slot is logged with its traceback; the owner sees one plain sentence."""

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(kind, value, tb)))
        from PySide6.QtCore import QCoreApplication

        window.statusBar().showMessage(
            QCoreApplication.translate(
                "MainWindow",
                "Something went wrong ({error}); the app keeps running. "
                "Details were written to the log.",
            ).format(error=kind.__name__),
            15000,
        )

    return hook


if __name__ == "__main__":
    sys.exit(main())
