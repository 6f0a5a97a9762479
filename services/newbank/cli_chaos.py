"""Run one failure scenario under payment load against the running platform; print timeline and figures.

    newbank chaos primary-node          # or its number in issue 7: newbank chaos 1b
    newbank chaos --list

The platform is the one of ``--home`` / ``$NEWBANK_HOME`` (started by ``newbank up``). The first run
makes a small world through the public API (merchants with offers, funded customers) and keeps it in
``<home>/chaos/world.json``. Exit code 0 when nothing was lost or duplicated and every check and
target held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from newbank.chaos.report import as_dict, render
from newbank.chaos.scenarios import SCENARIOS, resolve, run_blocking
from newbank.chaos.world import Target
from newbank.runtime.layout import Layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = [*SCENARIOS, *(s.issue_ref for s in SCENARIOS.values())]
    parser.add_argument("scenario", nargs="?", choices=names, metavar="SCENARIO", help=", ".join(SCENARIOS))
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--home", help="state folder (default: $NEWBANK_HOME or .newbank/ in the repository)")
    parser.add_argument("--workers", type=int, default=20, help="concurrent paying merchants (default 20)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this file")


def run(args: argparse.Namespace) -> int:
    if args.list or not args.scenario:
        for scenario in SCENARIOS.values():
            print(f"  {scenario.issue_ref:<3} {scenario.name:<22} {scenario.title}")
        return 0 if args.list else 2
    layout = Layout.from_env(Path(args.home).resolve() if args.home else None)
    if not layout.file.exists():
        print(f"nothing set up in {layout.home} (run `newbank up` first)", file=sys.stderr)
        return 2
    try:
        result = run_blocking(Target(layout), resolve(args.scenario).name, workers=args.workers)
    except TimeoutError as exc:
        print(f"chaos: {exc} (see `newbank status` and {layout.logs}/)", file=sys.stderr)
        return 2
    print()
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(as_dict(result), indent=1, default=str))
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``newbank chaos ...`` on its own (``newbank.cli`` registers ``add_arguments`` and ``run``)."""
    parser = argparse.ArgumentParser(prog="newbank chaos", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
