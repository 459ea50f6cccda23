"""``wamdata validate``: a dataset checked against its own records: schema, shard sha256s, tar structure,
recorded offsets, every array and every video decodable, and the label side-cars against their manifests."""

from __future__ import annotations

import json
import os
import tarfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from tqdm import tqdm

from wamdata.format.files import join_url
from wamdata.format.labels import LABELER_JSON, LABELS_DIR, sidecar_url, validate_labeler_manifest
from wamdata.format.reader import Dataset
from wamdata.format.schema import EPISODES_PARQUET, SchemaError, check_array, validate_meta
from wamdata.format.shards import iter_samples, load_npy, read_members, sha256_of
from wamdata.media.codec import VideoCodec
from wamdata.media.decode import decode_frames, probe_video


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
        folder_url = sidecar_url(dataset.url, folder.rsplit("/", 1)[1])
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
