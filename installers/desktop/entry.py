"""PyInstaller's entry script for ``retail-desktop``; the logic is ``desktop_client.frozen_entry``.

``freeze_support`` must run first: should anything start a ``multiprocessing`` child with the
spawn method (Windows, macOS), the child re-runs this executable and must not open a window.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from desktop_client.frozen_entry import main

    sys.exit(main())
