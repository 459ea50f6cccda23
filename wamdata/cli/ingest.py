"""``wamdata ingest``: read a native source format into a dataset, on Ray (local or a cluster)."""

from __future__ import annotations

import argparse
import sys
import warnings

from wamdata.cli.output import format_table, human_bytes


def add_parser(sub: argparse._SubParsersAction) -> None:
    from wamdata.sources import available_formats

    ingest = sub.add_parser("ingest", help="read a native source format into a dataset, on Ray (local or a cluster)")
    ingest.add_argument("source_format", help=f"one of: {', '.join(available_formats())}")
    ingest.add_argument("input", help="the input folder, file or URL, as the format expects")
    ingest.add_argument("--out", required=True, help="dataset folder to write")
    ingest.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    ingest.add_argument("--name", help="dataset name (default: from the input's name)")
    ingest.add_argument("--limit", type=int, help="ingest only the first N work items (episodes, or files of "
                                                 "episodes for formats that keep many in one file)")
    ingest.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from wamdata.ingest import ingest
    from wamdata.sources import InputWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        result = ingest(args.source_format, args.input, args.out, name=args.name, address=args.address,
                        limit=args.limit, progress=not args.quiet)
    for warning in caught:
        if issubclass(warning.category, InputWarning):
            print(f"WARNING {warning.message}", file=sys.stderr)
    summary = result.summary
    rows = [[name, s.episodes, s.steps, s.frames, s.shards, human_bytes(s.bytes)]
            for name, s in summary.by_source.items()]
    t = summary.total
    print(f"\nwamdata ingest: wrote {summary.root} ({args.source_format} from {args.input})")
    print(format_table(["source", "episodes", "steps", "frames", "shards", "bytes"], rows))
    resumed = f", {result.skipped_items} work items resumed from a previous run" if result.skipped_items else ""
    print(f"{t.frames / result.seconds:.0f} frames/s in {result.seconds:.1f} s{resumed}")
    for record in result.quarantined:
        print(f"QUARANTINED {record['key']} ({record['path']}): {record['reason']}", file=sys.stderr)
    if result.quarantined:
        print(f"{len(result.quarantined)} input(s) quarantined; see {summary.root}/quarantine.parquet", file=sys.stderr)
    return 0 if t.episodes else 1
