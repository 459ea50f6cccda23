"""The ``wamdata`` command line: demo, ingest, inspect, validate, stats, label."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import fsspec
import numpy as np

from wamdata.dataset import DATASET_JSON, Dataset, join_url, validate, write_dataset_info
from wamdata.demo import run_demo, run_demo_labeling, run_native_ingest
from wamdata.labeling.cli import add_label_parser, lam_log_printer
from wamdata.labeling.evaluate import format_quality
from wamdata.schema import SchemaError
from wamdata.sources import InputWarning, available_formats
from wamdata.sources.toyworld import load_config
from wamdata.stats import StatsAccumulator, StatsByArray, stats_document


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError("unreachable")


def cmd_demo(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    result = run_demo(config, out=args.out, progress=not args.quiet)
    summary = result.summary
    rows = []
    for name, s in summary.by_source.items():
        source = config["sources"][name]
        rows.append([name, source["kind"], source["embodiment"], s.episodes, s.steps, s.frames,
                     "yes" if source["with_actions"] else "no", s.shards, human_bytes(s.bytes)])
    t = summary.total
    rows.append(["total", "", "", t.episodes, t.steps, t.frames, "", t.shards, human_bytes(t.bytes)])
    print(f"\nwamdata demo: wrote {summary.root} ({config['name']})")
    print(format_table(["source", "kind", "embodiment", "episodes", "steps", "frames", "actions", "shards",
                        "bytes"], rows))
    seconds = result.seconds
    total_s = sum(seconds.values())
    print(f"bytes per frame: {t.bytes / max(t.frames, 1):.0f}   "
          f"write: {seconds['write']:.1f} s ({t.frames / seconds['write']:.0f} frames/s, generate+encode+stats)   "
          f"validate: {seconds['validate']:.1f} s   total: {total_s:.1f} s")
    if result.problems:
        print(f"validate: {len(result.problems)} problem(s)")
        for p in result.problems:
            print(f"  {p}")
        return 1
    print(f"validate: ok ({t.episodes} episodes, {t.shards} shards, every sample decoded)")
    native = run_native_ingest(config, out=args.out, progress=not args.quiet)
    if not native:
        return 0
    print("\nthe toy world written as native files, then `wamdata ingest`ed (Ray Data) and validated:")
    rows = [[n.format, str(n.input), str(n.summary.root), n.summary.total.episodes, n.summary.total.frames,
             n.quarantined, f"{n.seconds:.1f} s", "ok" if not n.problems else f"{len(n.problems)} problem(s)"]
            for n in native]
    print(format_table(["format", "input", "dataset", "episodes", "frames", "quarantined", "time", "validate"],
                       rows))
    for n in native:
        for p in n.problems:
            print(f"  {p}")
    if any(n.problems or n.quarantined for n in native):
        return 1
    return demo_labeling(config, args)


def demo_labeling(config: dict[str, Any], args: argparse.Namespace) -> int:
    labeling = config.get("labeling")
    if not labeling:
        return 0
    print(f"\ntraining a latent action model on the video of {', '.join(labeling['train_sources'])} "
          f"(no actions used), then labeling and measuring it:")
    result = run_demo_labeling(config, out=args.out, progress=not args.quiet,
                               on_log=None if args.quiet else lam_log_printer())
    applied = result.applied
    print(f"checkpoint {result.checkpoint} ({result.train_windows} train windows, {result.seconds['train']:.0f} s)")
    print(f"label apply: {applied.labelled} episodes, {applied.frames} frames -> {applied.folder} "
          f"({result.seconds['apply']:.1f} s)")
    print(format_quality(result.quality))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from wamdata.ingest import ingest  # Ray is imported only by the commands that run it

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


def cmd_validate(args: argparse.Namespace) -> int:
    problems = validate(args.dataset, progress=not args.quiet)
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    if problems:
        print(f"{args.dataset}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.dataset}: ok")
    return 0


def _shard_bytes(dataset: Dataset, shards: set[str]) -> int:
    fs, root = fsspec.core.url_to_fs(dataset.url)
    return sum(fs.size(join_url(root, s)) for s in shards)


def cmd_inspect(args: argparse.Namespace) -> int:
    dataset = Dataset.open(args.dataset)
    if args.episode is not None:
        key = int(args.episode) if args.episode.isdigit() else args.episode
        episode = dataset.read_episode(key)
        print(json.dumps(episode.meta, indent=2))
        for name, array in episode.arrays.items():
            print(f"{name}: {array.dtype} {array.shape}  first step {np.array2string(array[0], precision=3)}")
        for camera, video in episode.videos.items():
            print(f"{camera}: {len(video)} bytes, codec {episode.codecs[camera].to_json()}")
        return 0
    info = dataset.info
    print(f"{dataset.url}: {info['name']} (schema v{info['schema_version']}, "
          f"wamdata {info['creation']['wamdata_version']})")
    table = dataset.episodes.to_pylist()
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        by_source[row["source"]].append(row)
    rows = []
    for name, spec in dataset.sources.items():
        episodes = by_source[name]
        shards = {r["shard"] for r in episodes}
        cams = ", ".join(f"{c} {s.width}x{s.height} {s.codec.get('name')}" for c, s in spec.cameras.items())
        rows.append([name, spec.kind, spec.embodiment, spec.fps, len(episodes),
                     sum(r["num_steps"] for r in episodes), len(shards),
                     human_bytes(_shard_bytes(dataset, shards)), cams or "-"])
    print(format_table(["source", "kind", "embodiment", "fps", "episodes", "steps", "shards", "bytes",
                        "cameras"], rows))
    print("\narrays (per step):")
    rows = []
    for name, spec in dataset.sources.items():
        for array_name, a in spec.arrays.items():
            slices = ", ".join(f"{s.name}[{s.start}:{s.stop}]" + (f" {s.unit}" if s.unit else "") for s in a.slices)
            rows.append([name, array_name, a.dtype, list(a.shape), slices or "-"])
    print(format_table(["source", "array", "dtype", "shape", "slices"], rows) if rows else "  none")
    splits = Counter(r["split"] for r in table)
    labels = Counter(r["action_label"] for r in table)
    print(f"\nsplits: {dict(sorted(splits.items()))}   action labels: {dict(sorted(labels.items()))}")
    return 0


def _print_stats(title: str, stats: dict[str, dict[str, Any]]) -> None:
    for group, arrays in stats.items():
        for array_name, s in arrays.items():
            print(f"\n{title} {group} / {array_name} (count {s['count']})")
            names = ["mean", "std", "min", "max", "q01", "q99"]
            rows = [[d] + [f"{s[n][d]:.4g}" for n in names] for d in range(len(s["mean"]))]
            print(format_table(["dim", *names], rows))


def cmd_stats(args: argparse.Namespace) -> int:
    dataset = Dataset.open(args.dataset)
    accumulators: dict[str, StatsAccumulator] = defaultdict(StatsAccumulator)
    array_names = {n for spec in dataset.sources.values() for n in spec.arrays}
    for row, arrays in dataset.iter_array_members(array_names):
        accumulators[row["source"]].add(arrays)
    by_source: dict[str, StatsByArray] = {s: r for s, acc in accumulators.items() if (r := acc.result())}
    document = stats_document(by_source, {n: s.embodiment for n, s in dataset.sources.items()})
    _print_stats("source", document["by_source"])
    _print_stats("embodiment", document["by_embodiment"])
    stored = dataset.info["stats"]
    if stored != document:
        print(f"\nnote: the stats stored in {DATASET_JSON} differ from the recomputed ones"
              + ("; writing the recomputed ones" if args.write else " (use --write to update them)"))
    if args.write and stored != document:
        if "://" in dataset.url:
            raise SchemaError(f"{dataset.url}: --write needs a local dataset folder")
        write_dataset_info(dataset.url, {**dataset.info, "stats": document})
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wamdata", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="toy-world episodes -> shards -> stats -> validate, with a summary")
    demo.add_argument("--config", help="pipeline YAML (default: the packaged pipelines/demo.yaml)")
    demo.add_argument("--out", help="dataset folder (default: the config's out)")
    demo.set_defaults(func=cmd_demo)
    inspect = sub.add_parser("inspect", help="sources, episodes, arrays and slices of a dataset")
    inspect.add_argument("dataset", help="dataset folder or fsspec URL")
    inspect.add_argument("--episode", help="show one episode (index or episode_id)")
    inspect.set_defaults(func=cmd_inspect)
    ingest = sub.add_parser("ingest", help="read a native source format into a dataset, on Ray (local or a cluster)")
    ingest.add_argument("source_format", help=f"one of: {', '.join(available_formats())}")
    ingest.add_argument("input", help="the input folder, file or URL, as the format expects")
    ingest.add_argument("--out", required=True, help="dataset folder to write")
    ingest.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    ingest.add_argument("--name", help="dataset name (default: from the input's name)")
    ingest.add_argument("--limit", type=int, help="ingest only the first N work items (episodes, or files of "
                                                 "episodes for formats that keep many in one file)")
    ingest.set_defaults(func=cmd_ingest)
    check = sub.add_parser("validate", help="schema, sha256, tar structure, every sample decodable; exit 1 on problems")
    check.add_argument("dataset")
    check.set_defaults(func=cmd_validate)
    stats = sub.add_parser("stats", help="recompute normalization stats from the arrays (never decodes video)")
    stats.add_argument("dataset")
    stats.add_argument("--write", action="store_true", help="store the recomputed stats in dataset.json")
    stats.set_defaults(func=cmd_stats)
    add_label_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SchemaError, FileNotFoundError, FileExistsError) as e:
        print(f"wamdata {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
