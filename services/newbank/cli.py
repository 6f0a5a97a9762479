"""The ``newbank`` command (entry point ``newbank.cli:main``).

Subcommands are argparse sub-parsers collected from modules, so adding one touches no other file:
create ``services/newbank/cli_<name>.py`` (the subcommand is ``<name>``, its help the first line of the
module docstring) with::

    def add_arguments(parser: argparse.ArgumentParser) -> None:  # its options / nested sub-parsers
        sub = parser.add_subparsers(dest="ledger_command", required=True)
        sub.add_parser("verify", help="every posting balances")

    def run(args: argparse.Namespace) -> int:  # the exit code
        ...

A module that needs several subcommands defines ``register(subparsers)`` instead and sets
``handler=<callable(args) -> int>`` on each parser with ``set_defaults``. ``main`` imports every
``newbank.cli_*`` module by name. Built in: ``up``, ``down``, ``status``, ``scale`` (from
``newbank.runtime.commands``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable
from types import ModuleType

import newbank

BUILTIN_MODULES = ("newbank.runtime.commands",)


def command_modules() -> list[ModuleType]:
    """The built-in command modules, then every ``newbank.cli_<name>`` module, by name."""
    names = list(BUILTIN_MODULES)
    names += sorted(f"newbank.{m.name}" for m in pkgutil.iter_modules(newbank.__path__) if m.name.startswith("cli_"))
    return [importlib.import_module(name) for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newbank", description="NewBank Cashback, run locally")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        if hasattr(module, "register"):
            module.register(subparsers)
            continue
        name = module.__name__.rsplit(".", 1)[1].removeprefix("cli_").replace("_", "-")
        summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None
        parser_ = subparsers.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(parser_)
        parser_.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
