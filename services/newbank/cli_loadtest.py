"""``newbank loadtest`` and ``newbank bench scaling``: the locust load test and the scaling benchmark.

Both drive the platform started by ``newbank up`` (``$NEWBANK_HOME``, its ingress port) and write
their reports under ``results/``. The code lives in ``loadtest/`` at the top of the repository (it
is a tool of the repository, not part of the installed services), so this module puts the
repository on ``sys.path`` before importing it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _loadtest_importable() -> bool:
    if not (REPO / "loadtest" / "locustfile.py").exists():
        return False  # an installed copy without the repository: no load test to offer
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return True


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    if not _loadtest_importable():
        return
    from loadtest import bench_scaling, run

    parser = subparsers.add_parser(
        "loadtest",
        help="locust (1000 users) against the running platform: CSV/HTML reports, then checks",
        description=run.run.__doc__,
    )
    run.add_arguments(parser)
    parser.set_defaults(handler=run.run)

    bench = subparsers.add_parser("bench", help="benchmarks of the running platform")
    kinds = bench.add_subparsers(dest="bench_command", required=True)
    scaling = kinds.add_parser(
        "scaling",
        help="payments/s for 1..4 transaction instances, both ceilings, the chart",
        description=bench_scaling.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench_scaling.add_arguments(scaling)
    scaling.set_defaults(handler=bench_scaling.run)


def main(argv: Sequence[str] | None = None) -> int:
    """``newbank loadtest …`` / ``newbank bench scaling …`` without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="newbank")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
