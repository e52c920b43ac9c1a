"""``retail-node enroll``: join a coordinator with the one-time token its admin handed over.

The owner runs it once per node; afterwards the node holds its key pair, the coordinator's CA
and its API credentials in ``<data dir>/enrollment/`` (see ``shared.enrollment``). The CA
fingerprint is printed so the owner can compare it with the one the admin reads out: that
comparison is what makes the pinned CA trustworthy.

``--key-store`` says where the private key goes (``shared.secret_store``): ``auto`` (the default)
uses the computer's password store when one works and otherwise stops and explains the two
alternatives, ``encrypted`` a file protected by a passphrase, ``file`` a plain 0600 file (for
headless servers). The passphrase comes from ``RETAIL_NODE_PASSPHRASE`` or, on a terminal, a
prompt; it is never an argument (it would show in the process list).

Exit codes: 0 enrolled, 1 refused or not possible now (the reason is printed: token used or
expired, coordinator unreachable, already enrolled), 2 usage errors. ``--json`` prints one
object on stdout; never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from desktop_client.node_home import NodeHome
from shared.enrollment import EnrollmentError, enroll, normalise_api_url
from shared.secret_store import KeyStore, keyring_status, passphrase_problem

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# An environment variable keeps the token out of the process list (not a secret itself).
TOKEN_ENV = "RETAIL_NODE_ENROLLMENT_TOKEN"  # noqa: S105
PASSPHRASE_ENV = "RETAIL_NODE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
KEY_STORES = ("auto", *(store.value for store in KeyStore))


def read_passphrase(prompt: str, *, confirm: bool = False) -> str | None:
    """The passphrase from ``RETAIL_NODE_PASSPHRASE``, else asked on the terminal (twice when
    ``confirm``: a mistyped new passphrase would lock the key away); None when neither is
    possible or the two typings differ (the caller says what to do)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        return None
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("Type it again: ") != first:
            print("error: the two passphrases differ", file=sys.stderr)
            return None
    except (EOFError, KeyboardInterrupt):
        return None
    return first


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
        "--key-store",
        choices=KEY_STORES,
        default="auto",
        help=(
            "where the private key goes: keyring (the computer's password store), encrypted "
            f"(a file protected by a passphrase from {PASSPHRASE_ENV} or a prompt), file (a "
            "plain file only you can read, for servers); auto = keyring when one works"
        ),
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
    store, problem = _key_store(args.key_store)
    if store is None:
        return _report(problem, EXIT_REFUSED, args.json)
    passphrase = None
    if store is KeyStore.ENCRYPTED:
        passphrase = read_passphrase("Passphrase to protect the node's key: ", confirm=True)
        if passphrase is None:
            return _report(
                f"--key-store encrypted needs a passphrase: set {PASSPHRASE_ENV} or run this "
                "on a terminal to be asked",
                EXIT_USAGE,
                args.json,
            )
        weak = passphrase_problem(passphrase)
        if weak is not None:
            return _report(weak, EXIT_USAGE, args.json)
    home = NodeHome.locate(args.data_dir)
    try:
        result = enroll(
            url,
            token,
            home.root,
            timeout=args.timeout,
            force=args.force,
            expected_fingerprint=args.expect_fingerprint,
            key_store=store,
            passphrase=passphrase,
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
    print(f"Private key: {result.key_location.describe()}")
    print(f"CA and credentials: {result.directory}")
    return EXIT_OK


def _key_store(choice: str) -> tuple[KeyStore | None, str]:
    """The store to use, or None and what the owner should do instead."""
    if choice != "auto":
        return KeyStore(choice), ""
    status = keyring_status()
    if status.available:
        return KeyStore.KEYRING, ""
    return None, (
        f"{status.explanation} Enroll again with --key-store encrypted (a file protected by a "
        f"passphrase from {PASSPHRASE_ENV} or a prompt) or --key-store file (a plain file "
        "only your user can read, for servers)."
    )
