"""Reading a dataset folder (a local path or any fsspec URL): ``Dataset.open`` validates dataset.json and
episodes.parquet; one episode is read with one range read of its shard."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wamdata.format.files import join_url
from wamdata.format.schema import (
    DATASET_JSON,
    EPISODES_PARQUET,
    SchemaError,
    SourceSpec,
    validate_dataset_info,
    validate_episodes_table,
    with_default_columns,
)
from wamdata.format.shards import load_npy, read_members
from wamdata.media.codec import VideoCodec
from wamdata.media.decode import decode_frames


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
