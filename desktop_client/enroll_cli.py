"""``retail-node enroll``: join a coordinator with the one-time token its admin handed over.

The owner runs it once per node; afterwards the node holds its key pair, the coordinator's CA
and its API credentials in ``<data dir>/enrollment/`` (see ``shared.enrollment``). The CA
fingerprint is printed so the owner can compare it with the one the admin reads out: that
comparison is what makes the pinned CA trustworthy.

Exit codes: 0 enrolled, 1 refused or not possible now (the reason is printed: token used or
expired, coordinator unreachable, already enrolled), 2 usage errors. ``--json`` prints one
object on stdout; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from desktop_client.node_home import NodeHome
from shared.enrollment import EnrollmentError, enroll, normalise_api_url

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# An environment variable keeps the token out of the process list (not a secret itself).
TOKEN_ENV = "RETAIL_NODE_ENROLLMENT_TOKEN"  # noqa: S105


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``enroll`` to the ``retail-node`` sub-commands."""
    parser = sub.add_parser(
        "enroll",
        help="join a coordinator with a one-time enrollment token",
        description=(
            "Create this node's key pair, send the public half with the enrollment token to the "
            "coordinator, and keep its CA and the node's credentials in the data directory."
        ),
    )
    parser.add_argument("url", help="the coordinator's API address, e.g. http://10.0.0.5:8000")
    parser.add_argument(
        "--token", help=f"the one-time enrollment token (or set {TOKEN_ENV} instead)"
    )
    parser.add_argument("--data-dir", type=Path, help="this node's data directory")
    parser.add_argument(
        "--force", action="store_true", help="replace an existing enrollment (new key pair)"
    )
    parser.add_argument(
        "--expect-fingerprint",
        metavar="SHA256",
        help="the CA fingerprint the admin gave you; a different CA is refused",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the coordinator"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=cmd_enroll)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _report(message: str, code: int, as_json: bool) -> int:
    if as_json:
        _print_json({"ok": False, "error": message})
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


def cmd_enroll(args: argparse.Namespace) -> int:
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV, "")
    if not token.strip():
        return _report(
            f"give the enrollment token with --token TOKEN (or in {TOKEN_ENV})",
            EXIT_USAGE,
            args.json,
        )
    try:
        url = normalise_api_url(args.url)
    except ValueError as exc:
        return _report(str(exc), EXIT_USAGE, args.json)
    if not args.timeout > 0:
        return _report("--timeout must be a positive number of seconds", EXIT_USAGE, args.json)
    home = NodeHome.locate(args.data_dir)
    try:
        result = enroll(
            url,
            token,
            home.root,
            timeout=args.timeout,
            force=args.force,
            expected_fingerprint=args.expect_fingerprint,
        )
    except EnrollmentError as exc:
        return _report(exc.reason, EXIT_REFUSED, args.json)
    if args.json:
        _print_json({"ok": True, **result.to_json()})
        return EXIT_OK
    print(f"Enrolled as {result.retailer_name} (retailer #{result.retailer_id}) at {url}.")
    print(f"Coordinator CA fingerprint (SHA-256): {result.ca_fingerprint}")
    print("  Compare it with the fingerprint the coordinator's admin gave you; if they differ,")
    print(f"  do not use this enrollment and delete {result.directory}.")
    if result.registration == "registered":
        print(f"SuperLink: {result.superlink_address} (node id {result.flower_node_id})")
    else:
        print(f"SuperLink registration {result.registration}")
    print(f"Key pair, CA and credentials: {result.directory}")
    return EXIT_OK
