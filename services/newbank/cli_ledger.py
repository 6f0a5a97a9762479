"""Check the bank's ledger: every stored balance equals its postings, every journal entry sums to zero.

``newbank ledger verify`` reads the bank database of a running ``newbank up`` (or ``--database-url``),
prints a one-screen summary and exits 1 on any difference (2 if the database cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from newbank.ledger import verify_dsn
from newbank.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ledger_command", required=True)
    check = sub.add_parser("verify", help="check balances and journal entries against the postings")
    check.add_argument(
        "--database-url",
        default=None,
        help="the bank database (default: NEWBANK_DATABASE_URL, else the one `newbank up` runs)",
    )
    check.add_argument("--home", help="state folder of `newbank up` (default: $NEWBANK_HOME or .newbank/)")


def database_url(args: argparse.Namespace) -> str:
    """The explicit URL, else the environment's, else the primary of the local runtime's cluster."""
    if args.database_url:
        return args.database_url
    if os.environ.get("NEWBANK_DATABASE_URL"):
        return Settings().database_url
    from newbank.runtime.layout import Layout, default_home  # only the local runtime needs it

    layout = Layout.load(Path(args.home).resolve() if args.home else default_home())
    if layout is not None:
        return layout.pg_cluster().multi_host_dsn("bank")
    return Settings().database_url


def run(args: argparse.Namespace) -> int:
    dsn = database_url(args)
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
