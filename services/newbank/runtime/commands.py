"""The runtime's subcommands of ``newbank``: up, down, status, scale (registered by newbank.cli)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from newbank.runtime import procs
from newbank.runtime.layout import MAX_INSTANCES, SERVICES, Layout
from newbank.runtime.platform import down, up, wait_instances
from newbank.runtime.scale_target import set_desired_replicas
from newbank.runtime.status import as_json, collect, controller_pid, render


def _layout(args: argparse.Namespace) -> Layout:
    home = Path(args.home).resolve() if getattr(args, "home", None) else None
    return Layout.from_env(home)


def cmd_up(args: argparse.Namespace) -> int:
    layout = _layout(args)
    t0 = time.monotonic()
    print(f"newbank up — state folder {layout.home}")
    try:
        up(layout)
    except procs.StartupError as err:
        print(f"\nFAILED: {err}")
        if err.log_file:
            print(f"--- last lines of {err.log_file} ---\n{procs.tail(err.log_file)}")
        print("Everything this run started has been stopped.")
        return 1
    print()
    print(render(collect(layout)))
    token_note = (
        "NEWBANK_ADMIN_TOKEN (from your environment)"
        if os.environ.get("NEWBANK_ADMIN_TOKEN")
        else f"{layout.admin_token_file} (mode 600)"
    )
    print(f"\nReady in {time.monotonic() - t0:.1f} s.")
    print(f"  ingress:     {layout.ingress_url}   (e.g. curl {layout.ingress_url}/api/v1/partners)")
    print(f"  admin token: {token_note}")
    print(f"  logs:        {layout.logs}/")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    layout = _layout(args)
    print(f"newbank down — state folder {layout.home}")
    down(layout, purge=args.purge)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    layout = _layout(args)
    if not layout.file.exists():
        print(f"nothing set up in {layout.home} (run `newbank up`)")
        return 3
    rows = collect(layout)
    print(as_json(rows) if args.json else render(rows))
    return 0 if all(r.ready for r in rows) else 3


def cmd_scale(args: argparse.Namespace) -> int:
    layout = _layout(args)
    if not controller_pid(layout):
        print("the platform is not running (run `newbank up` first)")
        return 1
    wanted = set_desired_replicas(layout, args.service, args.replicas)
    if wanted != args.replicas:
        print(f"{args.service}: clamped to {wanted} (1..{MAX_INSTANCES[args.service]})")
    print(f"scaling {args.service} to {wanted} instance(s)…")
    if args.no_wait:
        return 0
    t0 = time.monotonic()
    try:
        wait_instances(layout, timeout_s=args.timeout)
    except procs.StartupError as err:
        print(f"FAILED: {err}")
        return 1
    rows = [r for r in collect(layout) if r.component.startswith(f"{args.service}-")]
    print(render(rows))
    print(f"done in {time.monotonic() - t0:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    home_help = "state folder (default: $NEWBANK_HOME or .newbank/ in the repository)"

    parser = subparsers.add_parser("up", help="start the whole platform locally and wait until it is ready")
    parser.add_argument("--home", help=home_help)
    parser.set_defaults(handler=cmd_up)

    parser = subparsers.add_parser("down", help="stop everything started by `up` (by PID); keep the data")
    parser.add_argument("--home", help=home_help)
    parser.add_argument("--purge", action="store_true", help="also delete the state folder")
    parser.set_defaults(handler=cmd_down)

    parser = subparsers.add_parser("status", help="a table of components, roles, PIDs, ports, limits")
    parser.add_argument("--home", help=home_help)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=cmd_status)

    parser = subparsers.add_parser("scale", help="change the number of instances of a service, live")
    parser.add_argument("service", choices=[s for s in SERVICES if MAX_INSTANCES[s] > 1])
    parser.add_argument("replicas", type=int)
    parser.add_argument("--home", help=home_help)
    parser.add_argument("--no-wait", action="store_true", help="return once the wish is recorded")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the new count")
    parser.set_defaults(handler=cmd_scale)
