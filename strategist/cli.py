"""`strategist` command line.

Each subcommand lives in its own module under `strategist.commands` and exposes
`register(subparsers)`; this file only discovers and dispatches them. Command modules keep their
heavy imports (torch, pandas) inside the function they run, so `strategist --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from strategist import __version__, commands
from strategist.errors import StrategistError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strategist",
        description="Virtual Strategist: simulate races, build datasets, train, evaluate, export and serve.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except StrategistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
