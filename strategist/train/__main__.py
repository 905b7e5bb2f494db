"""`python -m strategist.train ...` and `torchrun --nproc_per_node N -m strategist.train ...`.

Same options as `strategist train` (see strategist/commands/train.py).
"""

from __future__ import annotations

import argparse
import sys

from strategist.commands.train import add_arguments, run
from strategist.errors import StrategistError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m strategist.train", description="Train the Virtual Strategist model."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except StrategistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
