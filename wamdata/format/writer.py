"""Writing a dataset folder: DatasetWriter packs episodes into shards, then writes episodes.parquet,
quarantine.parquet and dataset.json (with stats) last, and swaps the finished folder into place.

Layout (schema v1)::

    DATASET/dataset.json          sources, feature specs, stats
    DATASET/episodes.parquet      one row per episode, with shard, sha256 and member offsets
    DATASET/quarantine.parquet    inputs that could not be read, with the reason
    DATASET/shards/<source>/shard-NNNNNN.tar
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wamdata import __version__
from wamdata.format.files import replace_folder, write_atomic, write_parquet
from wamdata.format.schema import (
    DATASET_JSON,
    EPISODES_PARQUET,
    QUARANTINE_PARQUET,
    SCHEMA_VERSION,
    Episode,
    SchemaError,
    SourceSpec,
    episodes_arrow_schema,
    quarantine_arrow_schema,
    validate_dataset_info,
    validate_episodes_table,
)
from wamdata.format.shards import Sample, SampleLocation, ShardWriter, encode_sample, load_npy
from wamdata.format.stats import StatsAccumulator, stats_document

DEFAULT_SHARD_BYTES = 64 * 1024 * 1024


def write_episodes_table(root: str | os.PathLike, table: pa.Table) -> None:
    """Validate and atomically replace ``root/episodes.parquet`` (local folders only)."""
    path = Path(root) / EPISODES_PARQUET
    validate_episodes_table(table, str(path))
    write_parquet(path, table)


def write_dataset_info(root: str | os.PathLike, info: dict[str, Any]) -> None:
    """Validate and atomically write ``root/dataset.json`` (local folders only)."""
    path = Path(root) / DATASET_JSON
    validate_dataset_info(info, str(path))
    write_atomic(path, json.dumps(info, indent=2, sort_keys=True).encode() + b"\n")


@dataclass
class SourceSummary:
    episodes: int = 0
    steps: int = 0
    frames: int = 0
    shards: int = 0
    bytes: int = 0


@dataclass
class DatasetSummary:
    root: Path
    by_source: dict[str, SourceSummary] = field(default_factory=dict)

    @property
    def total(self) -> SourceSummary:
        total = SourceSummary()
        for s in self.by_source.values():
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(s, name))
        return total


class DatasetWriter:
    """Writes a dataset folder from episodes, source by source, in the order given.

    Everything goes to a staging folder beside ``root``; ``close()`` writes episodes.parquet and
    dataset.json last and then swaps the staging folder into place, so ``root`` is always either the
    previous complete dataset or the new complete one, never a mixture. Use it as a context manager: an
    exception discards the staging folder.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        name: str,
        sources: Iterable[SourceSpec],
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        description: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.staging = self.root.with_name(f".{self.root.name}.partial")
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self.name = name
        self.description = description
        self.sources = {s.name: s for s in sources}
        for spec in self.sources.values():
            spec.check(f"source spec {spec.name!r}")
        self.shard_writers = {
            name: ShardWriter(self.staging, f"shards/{name}", shard_bytes) for name in self.sources
        }
        self.rows: list[tuple[dict[str, Any], SampleLocation]] = []
        self.stats = {name: StatsAccumulator() for name in self.sources}
        self.quarantined: list[dict[str, str]] = []

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, episode: Episode) -> None:
        if episode.source not in self.sources:
            raise SchemaError(f"episode {episode.native_key!r}: unknown source {episode.source!r}")
        self.add_sample(encode_sample(episode, self.sources[episode.source]), episode.arrays)

    def add_sample(self, sample: Sample, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Add an already encoded sample (e.g. made by an ingest worker); ``arrays`` are its per-step arrays
        for the statistics, read back from its .npy members when not given."""
        source = sample.meta["source"]
        if source not in self.sources:
            raise SchemaError(f"sample {sample.key!r}: unknown source {source!r}")
        if arrays is None:
            arrays = sample_arrays(sample)
        self.rows.append((sample.meta, self.shard_writers[source].add(sample)))
        self.stats[source].add(arrays)

    def quarantine(self, key: str, path: str, reason: str) -> None:
        """Record an input that could not be read; it goes to quarantine.parquet with its reason."""
        self.quarantined.append({"key": key, "path": path, "reason": reason})

    def abort(self) -> None:
        for writer in self.shard_writers.values():
            writer.abort()
        shutil.rmtree(self.staging, ignore_errors=True)

    def close(self) -> DatasetSummary:
        shard_sha = {}
        summary = DatasetSummary(root=self.root, by_source={name: SourceSummary() for name in self.sources})
        for name, writer in self.shard_writers.items():
            for shard in writer.close():
                shard_sha[shard.path] = shard.sha256
                summary.by_source[name].shards += 1
                summary.by_source[name].bytes += shard.num_bytes
        table = episodes_table(self.rows, shard_sha)
        validate_episodes_table(table, str(self.staging / EPISODES_PARQUET))
        for meta, _ in self.rows:
            s = summary.by_source[meta["source"]]
            s.episodes += 1
            s.steps += meta["num_steps"]
            s.frames += meta["num_steps"] * len(meta["cameras"])
        write_parquet(self.staging / EPISODES_PARQUET, table)
        write_parquet(self.staging / QUARANTINE_PARQUET, quarantine_table(self.quarantined))
        write_dataset_info(self.staging, self.info())
        replace_folder(self.root, self.staging)
        return summary

    def info(self) -> dict[str, Any]:
        embodiments: dict[str, list[str]] = defaultdict(list)
        for spec in self.sources.values():
            embodiments[spec.embodiment].append(spec.name)
        info: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "sources": {name: spec.to_json() for name, spec in sorted(self.sources.items())},
            "embodiments": {e: sorted(s) for e, s in sorted(embodiments.items())},
            "stats": stats_document(
                {s: result for s, acc in self.stats.items() if (result := acc.result())},
                {name: spec.embodiment for name, spec in self.sources.items()},
            ),
            "creation": {"wamdata_version": __version__},
        }
        if self.description:
            info["description"] = self.description
        return info



def sample_arrays(sample: Sample) -> dict[str, np.ndarray]:
    return {suffix[: -len(".npy")]: load_npy(data) for suffix, data in sample.members if suffix.endswith(".npy")}


def quarantine_table(records: list[dict[str, str]]) -> pa.Table:
    """quarantine.parquet: one row per input that failed (work item key, file, reason), in input order."""
    schema = quarantine_arrow_schema()
    return pa.table({f.name: pa.array([r[f.name] for r in records], type=f.type) for f in schema}, schema=schema)


def episodes_table(rows: list[tuple[dict[str, Any], SampleLocation]], shard_sha: dict[str, str]) -> pa.Table:
    """Rows in shard order (shard path, then offset), the order a plain scan of sorted shards yields."""
    columns: dict[str, list[Any]] = defaultdict(list)
    for meta, location in sorted(rows, key=lambda r: (r[1].shard, r[1].offset)):
        for name in ("episode_id", "source", "native_key", "source_kind", "embodiment", "num_steps", "fps",
                     "cameras", "has_actions", "action_label", "language", "split"):
            columns[name].append(meta[name])
        columns["shard"].append(location.shard)
        columns["shard_sha256"].append(shard_sha[location.shard])
        columns["sample_offset"].append(location.offset)
        columns["sample_size"].append(location.size)
        columns["members"].append([vars(m) for m in location.members])
        columns["labels"].append([])
    schema = episodes_arrow_schema()
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)
