"""The ``wamdata`` command line: demo, ingest, inspect, validate, stats, label.

One module per command group; each imports what its commands need (torch, Ray, the models) only when a
command runs, so ``wamdata --help``, ``inspect`` and ``validate`` start without them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wamdata.cli import dataset, demo, ingest, label
from wamdata.format.schema import SchemaError

COMMAND_GROUPS = (demo, ingest, dataset, label)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wamdata", description=__doc__.split("\n\n")[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SchemaError, FileNotFoundError, FileExistsError) as e:
        print(f"wamdata {args.command}: error: {e}", file=sys.stderr)
        return 1
