"""What the frozen ``retail-desktop`` executable runs: one binary, three jobs.

Why: a PyInstaller bundle has no Python interpreter, no ``flower-supernode`` script and no
``retail-node`` script beside it, only its own executable. So the node runtime, when
``sys.frozen`` is set, starts its processes as ``retail-desktop --node-process KIND ARGS...``
and this module routes them:

- ``--node-process supernode|runner ARGS...``: one node process, run in-process by
  :func:`shared.node_runtime.launch.node_process_main` (the Flower SuperNode or the trusted
  ClientApp runner);
- ``--node-cli ARGS...``: the ``retail-node`` command line (enroll, join, validate...);
- anything else: the desktop app (``--self-test`` opens every page and exits 0).

Imports are deferred to the branch taken, so a node process never loads Qt and the window
never waits for Flower or torch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

NODE_PROCESS_FLAG = "--node-process"
NODE_CLI_FLAG = "--node-cli"


def _exit_code(exc: SystemExit) -> int:
    """``sys.exit`` semantics: None is success, an int is the code, anything else is printed."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def dispatch(argv: Sequence[str]) -> int:
    """Run the job ``argv`` (the executable's arguments, without its name) asks for."""
    args = list(argv)
    if args and args[0] == NODE_PROCESS_FLAG:
        from shared.node_runtime.launch import node_process_main

        return node_process_main(args[1:])
    if args and args[0] == NODE_CLI_FLAG:
        from desktop_client.node_cli import main as node_cli_main

        return node_cli_main(args[1:])
    from desktop_client.app import main as app_main

    return app_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the bundle; ``argparse``'s ``--help`` exits become return codes."""
    try:
        return dispatch(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return _exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
