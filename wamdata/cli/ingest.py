"""``wamdata ingest``: read a native source format into a dataset, on Ray (local or a cluster).

    wamdata ingest FORMAT INPUT --out OUT [--set KEY=VALUE ...]
    wamdata ingest --config FILE.yaml [FORMAT INPUT] [--out OUT] [--set KEY=VALUE ...]

The run is data (``ABOUT`` below, which ``--help`` prints).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from wamdata.cli.output import format_table, human_bytes

SCHEMA = "ingest.schema.json"
ABOUT = ("Read a native source format into a dataset, on Ray (local or a cluster). The run is data: a YAML file "
         "(--config; schemas/v1/ingest.schema.json: format, input, out, name, limit, address, shard_bytes, options) "
         "and the command line on top of it, where --set KEY=VALUE sets one of the format's options (dotted for a "
         "nested one: video.pix_fmt=yuv444p; the value read as YAML). Paths in the file are taken from the working "
         "directory, as on the command line. Examples: pipelines/ingest/*.yaml.")
# Top-level keys of an ingest config: the argparse destination that sets each, and how the user writes it.
FLAGS = {"format": "source_format", "input": "input", "out": "out", "name": "name", "limit": "limit",
         "address": "address", "shard_bytes": "shard_bytes"}
SPELLED = {"format": "FORMAT", "input": "INPUT", "out": "--out", "name": "--name", "limit": "--limit",
           "address": "--address", "shard_bytes": "--shard-bytes"}
REQUIRED = ("format", "input", "out")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from wamdata.sources import available_formats

    ingest = sub.add_parser(
        "ingest", help="read a native source format into a dataset, on Ray (local or a cluster)",
        description=ABOUT,
    )
    ingest.add_argument("source_format", nargs="?", metavar="FORMAT", help=f"one of: {', '.join(available_formats())}")
    ingest.add_argument("input", nargs="?", metavar="INPUT", help="the input folder, file or URL")
    ingest.add_argument("--config", metavar="FILE.yaml", help="the ingest as YAML; the command line overrides it")
    ingest.add_argument("--out", help="dataset folder to write")
    ingest.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the format, e.g. fps=30, short_side=256, video.pix_fmt=yuv444p (repeatable)")
    ingest.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    ingest.add_argument("--name", help="dataset name (default: from the input's name)")
    ingest.add_argument("--limit", type=int, help="ingest only the first N work items (episodes, or files of "
                                                 "episodes for formats that keep many in one file)")
    ingest.add_argument("--shard-bytes", type=int, help="target size of a shard in bytes")
    ingest.set_defaults(func=cmd_ingest, usage_error=ingest.error)


def ingest_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ingest the command line asks for: the config file, then the flags, then ``--set`` on its options;
    ConfigError naming the file (or the command line) and the key when it does not follow the schema."""
    from wamdata.format.config import check_against_schema, load_yaml, with_overrides

    for override in args.overrides:
        key = override.partition("=")[0].split(".")[0].strip()
        if key in SPELLED:
            args.usage_error(f"--set {override}: {key} is a setting of the run, not an option of the format: "
                             f"give {SPELLED[key]}")
    doc = load_yaml(args.config, SCHEMA) if args.config else {}
    doc.update({key: getattr(args, flag) for key, flag in FLAGS.items() if getattr(args, flag) is not None})
    doc["options"] = with_overrides(doc.get("options") or {}, args.overrides)
    check_against_schema(doc, SCHEMA, "the command line" if not args.config else f"{args.config} with the command line")
    missing = [SPELLED[key] for key in REQUIRED if key not in doc]
    if missing:
        args.usage_error(f"give {' and '.join(missing)} (or a --config file that has them)")
    return doc


@contextmanager
def printed_warnings() -> Iterator[None]:
    """Print the settings adapters chose (NOTE) and what they found wrong with the input (WARNING) as they come."""
    from wamdata.sources.base import DefaultChosen, InputWarning

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        if issubclass(category, DefaultChosen):
            print(f"NOTE {message}", file=sys.stderr)
        elif issubclass(category, InputWarning):
            print(f"WARNING {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", DefaultChosen)
        warnings.simplefilter("always", InputWarning)
        warnings.showwarning = show
        yield


def cmd_ingest(args: argparse.Namespace) -> int:
    from wamdata.format.config import ConfigError
    from wamdata.ingest import ingest
    from wamdata.sources import adapter_for

    doc = ingest_config(args)
    with printed_warnings():
        try:
            adapter = adapter_for(doc["format"], doc["input"], **doc["options"])
            adapter.specs()  # reads the input's metadata: a folder that is not of the format fails here
        except ConfigError as e:
            raise ConfigError(f"{args.config}: {e}" if args.config else str(e)) from None
        except (ValueError, OSError) as e:  # the input is not of the format (adapters name the file and the reason)
            print(f"wamdata ingest: error: {e}", file=sys.stderr)
            return 1
        run = {key: doc[key] for key in ("name", "address", "limit", "shard_bytes") if key in doc}
        result = ingest(doc["format"], doc["input"], doc["out"], adapter=adapter, progress=not args.quiet, **run)
    summary = result.summary
    rows = [[name, s.episodes, s.steps, s.frames, s.shards, human_bytes(s.bytes)]
            for name, s in summary.by_source.items()]
    t = summary.total
    print(f"\nwamdata ingest: wrote {summary.root} ({doc['format']} from {doc['input']})")
    print(format_table(["source", "episodes", "steps", "frames", "shards", "bytes"], rows))
    resumed = f", {result.skipped_items} work items resumed from a previous run" if result.skipped_items else ""
    print(f"{t.frames / result.seconds:.0f} frames/s in {result.seconds:.1f} s{resumed}")
    for record in result.quarantined:
        print(f"QUARANTINED {record['key']} ({record['path']}): {record['reason']}", file=sys.stderr)
    if result.quarantined:
        print(f"{len(result.quarantined)} input(s) quarantined; see {summary.root}/quarantine.parquet", file=sys.stderr)
    return 0 if t.episodes else 1
