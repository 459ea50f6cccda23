"""``wamdata inspect | validate | stats``: look at a dataset; none of them imports torch or Ray."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from typing import Any

import fsspec
import numpy as np

from wamdata.cli.output import format_table, human_bytes
from wamdata.format.files import join_url
from wamdata.format.reader import Dataset
from wamdata.format.schema import DATASET_JSON, SchemaError
from wamdata.format.stats import StatsAccumulator, StatsByArray, stats_document
from wamdata.format.validate import validate
from wamdata.format.writer import write_dataset_info


def add_parser(sub: argparse._SubParsersAction) -> None:
    inspect = sub.add_parser("inspect", help="sources, episodes, arrays and slices of a dataset")
    inspect.add_argument("dataset", help="dataset folder or fsspec URL")
    inspect.add_argument("--episode", help="show one episode (index or episode_id)")
    inspect.set_defaults(func=cmd_inspect)
    check = sub.add_parser("validate", help="schema, sha256, tar structure, every sample decodable; exit 1 on problems")
    check.add_argument("dataset")
    check.set_defaults(func=cmd_validate)
    stats = sub.add_parser("stats", help="recompute normalization stats from the arrays (never decodes video)")
    stats.add_argument("dataset")
    stats.add_argument("--write", action="store_true", help="store the recomputed stats in dataset.json")
    stats.set_defaults(func=cmd_stats)


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
