"""``newbank ledger verify``: recompute every stored balance from the postings; exit 1 on a difference."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from newbank.ledger import verify_dsn
from newbank.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ledger_command", required=True)
    check = sub.add_parser("verify", help="check balances and journal entries against the postings")
    check.add_argument(
        "--database-url",
        default=None,
        help="the bank database (default: NEWBANK_DATABASE_URL, else the local default)",
    )


def run(args: argparse.Namespace) -> int:
    dsn = args.database_url or Settings().database_url
    try:
        report = asyncio.run(verify_dsn(dsn))
    except Exception as exc:
        print(f"ledger verify: cannot read the bank database ({exc.__class__.__name__}: {exc})", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``newbank ledger ...`` on its own (the CLI registers ``add_arguments`` and ``run``)."""
    parser = argparse.ArgumentParser(prog="newbank ledger", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
