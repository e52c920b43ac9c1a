"""``retail-coordinator``: the coordinator's daemon and admin CLI.

Today it publishes the category taxonomy retailers map onto; the daemon, enrollment and
campaign commands arrive with the coordinator issue.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from shared import __version__
from shared.taxonomy import load_taxonomy


def cmd_taxonomy(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy()
    if args.output:
        Path(args.output).write_text(json.dumps(taxonomy.to_json(), indent=2) + "\n", "utf-8")
    if args.json:
        print(json.dumps(taxonomy.to_json(), indent=2))
        return 0
    print(f"Category taxonomy {taxonomy.version} ({len(taxonomy.categories)} categories):")
    for category in taxonomy.categories:
        print(f"  {category.code:<14} {category.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-coordinator", description="Retail Intelligence Platform coordinator"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    tax = sub.add_parser("taxonomy", help="show or export the category taxonomy retailers use")
    tax.add_argument("--json", action="store_true")
    tax.add_argument("--output", help="also write it to this file")
    tax.set_defaults(handler=cmd_taxonomy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
