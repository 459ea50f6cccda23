"""A dataset folder: write it (DatasetWriter), open and read it (Dataset), check it (validate).

Layout (schema v1)::

    DATASET/dataset.json          sources, feature specs, stats
    DATASET/episodes.parquet      one row per episode, with shard, sha256 and member offsets
    DATASET/shards/<source>/shard-NNNNNN.tar
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from wamdata import __version__
from wamdata.schema import (
    SCHEMA_VERSION,
    Episode,
    SchemaError,
    SourceSpec,
    check_array,
    episodes_arrow_schema,
    quarantine_arrow_schema,
    validate_dataset_info,
    validate_episodes_table,
    validate_labeler_manifest,
    validate_meta,
    with_default_columns,
)
from wamdata.shards import (
    Sample,
    SampleLocation,
    ShardWriter,
    encode_sample,
    iter_samples,
    load_npy,
    read_members,
    sha256_of,
)
from wamdata.stats import StatsAccumulator, stats_document
from wamdata.video import VideoCodec, decode_frames, probe_video

DATASET_JSON = "dataset.json"
EPISODES_PARQUET = "episodes.parquet"
QUARANTINE_PARQUET = "quarantine.parquet"
LABELS_DIR = "labels"  # label side-cars: labels/<labeler-id>/*.tar + labeler.json (schemas/v1/labels.schema.json)
LABELER_JSON = "labeler.json"
DEFAULT_SHARD_BYTES = 64 * 1024 * 1024


def join_url(root: str, relative: str) -> str:
    """Join a dataset root (local path or fsspec URL) and a relative posix path."""
    return f"{str(root).rstrip('/')}/{relative}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary name unique to this process, fsync, then rename
    (several processes may write the same path, e.g. a retried Ray task and its first attempt)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _write_parquet(path: Path, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    write_atomic(path, buffer.getvalue())


def write_episodes_table(root: str | os.PathLike, table: pa.Table) -> None:
    """Validate and atomically replace ``root/episodes.parquet`` (local folders only)."""
    path = Path(root) / EPISODES_PARQUET
    validate_episodes_table(table, str(path))
    _write_parquet(path, table)


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
        _write_parquet(self.staging / EPISODES_PARQUET, table)
        _write_parquet(self.staging / QUARANTINE_PARQUET, quarantine_table(self.quarantined))
        write_dataset_info(self.staging, self.info())
        self._swap_into_place()
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

    def _swap_into_place(self) -> None:
        previous = self.root.with_name(f".{self.root.name}.previous")
        if self.root.exists():
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(self.root, previous)
        os.replace(self.staging, self.root)
        shutil.rmtree(previous, ignore_errors=True)


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


@dataclass
class StoredEpisode:
    """One episode read back from its shard: meta, arrays decoded, videos still encoded."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    videos: dict[str, bytes]
    codecs: dict[str, VideoCodec]

    def frames(self, camera: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return decode_frames(self.videos[camera], start, stop)


class Dataset:
    """An opened dataset (local path or any fsspec URL), validated on open."""

    def __init__(self, url: str, info: dict[str, Any], episodes: pa.Table) -> None:
        self.url = url
        self.info = info
        self.episodes = episodes
        self.sources = {name: SourceSpec.from_json(name, s) for name, s in info["sources"].items()}
        self._row_of_id = {eid: i for i, eid in enumerate(episodes.column("episode_id").to_pylist())}

    @classmethod
    def open(cls, url: str | os.PathLike) -> Dataset:
        url = str(url)
        info_url = join_url(url, DATASET_JSON)
        try:
            with fsspec.open(info_url, "rb") as f:
                info = json.loads(f.read())
        except FileNotFoundError:
            raise SchemaError(f"{info_url}: missing; {url} is not a wamdata dataset (or was not finished)") from None
        except json.JSONDecodeError as e:
            raise SchemaError(f"{info_url}: not valid JSON: {e}") from None
        validate_dataset_info(info, info_url)
        episodes_url = join_url(url, EPISODES_PARQUET)
        try:
            with fsspec.open(episodes_url, "rb") as f:
                episodes = pq.read_table(f)
        except FileNotFoundError:
            raise SchemaError(f"{episodes_url}: missing") from None
        except (pa.ArrowInvalid, OSError) as e:
            raise SchemaError(f"{episodes_url}: unreadable parquet: {e}") from None
        validate_episodes_table(episodes, episodes_url)
        episodes = with_default_columns(episodes)
        unknown = set(episodes.column("source").to_pylist()) - set(info["sources"])
        if unknown:
            raise SchemaError(f"{episodes_url}: episodes of sources not in dataset.json: {sorted(unknown)}")
        return cls(url, info, episodes)

    def __len__(self) -> int:
        return self.episodes.num_rows

    def row(self, episode: int | str) -> dict[str, Any]:
        index = self._row_of_id[episode] if isinstance(episode, str) else episode
        return self.episodes.slice(index, 1).to_pylist()[0]

    def shard_url(self, shard: str) -> str:
        return join_url(self.url, shard)

    def read_episode(self, episode: int | str) -> StoredEpisode:
        """Read one episode with a single range read of its shard (no scan)."""
        row = self.row(episode)
        members = read_members(self.shard_url(row["shard"]), row["members"])
        return self.stored_episode(members)

    def stored_episode(self, members: dict[str, bytes]) -> StoredEpisode:
        """Decode a sample's members (suffix -> bytes) into a StoredEpisode."""
        meta = json.loads(members["meta.json"])
        spec = self.sources[meta["source"]]
        codecs = {cam: VideoCodec.from_json(spec.cameras[cam].codec) for cam in meta["cameras"]}
        return StoredEpisode(
            meta=meta,
            arrays={name: load_npy(members[f"{name}.npy"]) for name in meta["arrays"]},
            videos={cam: members[f"{cam}.{codec.extension}"] for cam, codec in codecs.items()},
            codecs=codecs,
        )

    def iter_array_members(self, names: Iterable[str]) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
        """(row, arrays) per episode, reading only the named .npy members (never the video)."""
        wanted = {f"{n}.npy" for n in names}
        for row in self.episodes.to_pylist():
            members = [m for m in row["members"] if m["name"].split(".", 1)[1] in wanted]
            data = read_members(self.shard_url(row["shard"]), members) if members else {}
            yield row, {suffix.removesuffix(".npy"): load_npy(b) for suffix, b in data.items()}


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _check_sample(
    dataset: Dataset, key: str, members: dict[str, bytes], row: dict[str, Any], where: str
) -> Iterator[Problem]:
    try:
        meta = json.loads(members["meta.json"])
        validate_meta(meta, f"{where}: {key}.meta.json")
    except (KeyError, json.JSONDecodeError, SchemaError) as e:
        yield Problem(where, f"sample {key}: bad or missing meta.json: {e}")
        return
    for column in ("episode_id", "source", "num_steps", "cameras", "has_actions", "language", "split"):
        if meta[column] != row[column]:
            disagreement = f"meta.json {column}={meta[column]!r}, episodes.parquet has {row[column]!r}"
            yield Problem(where, f"sample {key}: {disagreement}")
    spec = dataset.sources[meta["source"]]
    for name in meta["arrays"]:
        try:
            array = load_npy(members[f"{name}.npy"])
            check_array(array, spec.arrays[name], meta["num_steps"], f"sample {key}: {name}.npy")
        except (KeyError, ValueError, SchemaError) as e:
            yield Problem(where, f"sample {key}: array {name}: {e}")
    for camera in meta["cameras"]:
        codec = VideoCodec.from_json(spec.cameras[camera].codec)
        try:
            data = members[f"{camera}.{codec.extension}"]
            frames = decode_frames(data, 0, probe_video(data).num_frames)
        except (KeyError, ValueError) as e:
            yield Problem(where, f"sample {key}: camera {camera}: cannot decode: {e}")
            continue
        expected = (meta["num_steps"], spec.cameras[camera].height, spec.cameras[camera].width, 3)
        if frames.shape != expected:
            yield Problem(where, f"sample {key}: camera {camera}: decoded {frames.shape}, expected {expected}")


def validate(url: str | os.PathLike, progress: bool = True) -> list[Problem]:
    """Check a dataset: schema, shard checksums, tar structure, offsets, every array and video decodable."""
    url = str(url)
    try:
        dataset = Dataset.open(url)
    except SchemaError as e:
        return [Problem(url, str(e))]
    problems: list[Problem] = []
    rows_by_shard: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in dataset.episodes.to_pylist():
        rows_by_shard[row["shard"]][row["episode_id"]] = row
    bar = tqdm(total=len(dataset), desc="validate", unit="episode", disable=not progress)
    for shard, rows in sorted(rows_by_shard.items()):
        shard_url = dataset.shard_url(shard)
        expected_sha = next(iter(rows.values()))["shard_sha256"]
        try:
            actual_sha = sha256_of(shard_url)
        except FileNotFoundError:
            problems.append(Problem(shard_url, "shard file is missing"))
            bar.update(len(rows))
            continue
        if actual_sha != expected_sha:
            problems.append(Problem(shard_url, f"sha256 mismatch: expected {expected_sha}, got {actual_sha}"))
        seen = set()
        try:
            for key, members in iter_samples(shard_url):
                if key not in rows:
                    problems.append(Problem(shard_url, f"sample {key} is not in episodes.parquet"))
                    continue
                seen.add(key)
                bar.update(1)
                problems.extend(_check_sample(dataset, key, members, rows[key], shard_url))
                located = read_members(shard_url, rows[key]["members"])
                if located != members:
                    problems.append(Problem(shard_url, f"sample {key}: recorded member offsets do not match the tar"))
        except (tarfile.TarError, EOFError, OSError) as e:
            problems.append(Problem(shard_url, f"unreadable tar: {type(e).__name__}: {e}"))
        for missing in sorted(set(rows) - seen):
            problems.append(Problem(shard_url, f"episode {missing} is listed in episodes.parquet but not in the shard"))
        bar.update(len(set(rows) - seen))
    bar.close()
    return problems + label_problems(dataset)


def label_problems(dataset: Dataset) -> list[Problem]:
    """Label side-cars against their labeler.json: schema, finished, every tar listed and with its sha256; and
    each labeler id of episodes.parquet's labels column backed by a manifest that lists the episode."""
    fs, root = fsspec.core.url_to_fs(dataset.url)
    problems: list[Problem] = []
    episodes_by_labeler: dict[str, set[str]] = {}
    for path in sorted(fs.glob(f"{root}/{LABELS_DIR}/*/{LABELER_JSON}")):
        folder = path.rsplit("/", 1)[0]
        folder_url = join_url(dataset.url, f"{LABELS_DIR}/{folder.rsplit('/', 1)[1]}")
        url = join_url(folder_url, LABELER_JSON)
        try:
            manifest = json.loads(fs.cat_file(path))
            validate_labeler_manifest(manifest, url)
        except (json.JSONDecodeError, SchemaError) as e:
            problems.append(Problem(url, str(e)))
            continue
        if manifest["labeler"] != folder.rsplit("/", 1)[1]:
            problems.append(Problem(url, f"labeler {manifest['labeler']!r} does not match its folder"))
        if not manifest["complete"]:
            problems.append(Problem(url, "incomplete: wamdata label apply was interrupted; run it again to finish"))
            continue
        episodes_by_labeler[manifest["labeler"]] = set(manifest["episodes"])
        on_disk = {p.rsplit("/", 1)[1] for p in fs.glob(f"{folder}/*.tar")}
        problems += [Problem(join_url(folder_url, t), "label tar not listed in labeler.json")
                     for t in sorted(on_disk - set(manifest["tars"]))]
        for tar, entry in sorted(manifest["tars"].items()):
            tar_url = join_url(folder_url, tar)
            if tar not in on_disk:
                problems.append(Problem(tar_url, "label tar listed in labeler.json is missing"))
            elif (actual := sha256_of(tar_url)) != entry["sha256"]:
                problems.append(Problem(tar_url, f"sha256 mismatch: expected {entry['sha256']}, got {actual}"))
    for episode_id, labelers in zip(dataset.episodes.column("episode_id").to_pylist(),
                                    dataset.episodes.column("labels").to_pylist(), strict=True):
        for labeler in labelers:
            if episode_id not in episodes_by_labeler.get(labeler, ()):
                problems.append(Problem(join_url(dataset.url, EPISODES_PARQUET),
                                        f"episode {episode_id}: labels {labeler!r} has no finished side-car "
                                        f"listing it ({LABELS_DIR}/{labeler}/{LABELER_JSON})"))
    return problems
