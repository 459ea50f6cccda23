"""LeRobot datasets: v2.0 / v2.1 (one parquet + one mp4 per episode, meta/episodes.jsonl, meta/tasks.jsonl)
and v3.0 (meta/episodes/chunk-*/file-*.parquet; many episodes per data and video file, located by
dataset_from_index/to_index and videos/<key>/from_timestamp/to_timestamp).

Every non-video feature becomes a per-step array (``observation.state`` -> ``state``, ``action`` ->
``action``, ``next.reward`` -> ``next_reward``, ...; only the row bookkeeping ``index``/``episode_index`` is
dropped); ``meta/modality.json`` (GR00T flavour) slices become named slices. ``info.json`` is checked
against the files: a video key with no files, wrong totals or split ranges are warned about and the data
that is there is ingested. One work item is one episode.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wamdata.format.schema import ArraySpec, CameraSpec, Episode, Slice, SourceSpec
from wamdata.media.codec import codec_for_frames
from wamdata.media.decode import decode_frames, probe_video
from wamdata.sources.base import InputWarning, SourceAdapter, WorkItem, register, safe_name

BOOKKEEPING_COLUMNS = ("index", "episode_index", "frame_index")
ARRAY_NAMES = {"observation.state": "state", "action": "action"}
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _parse_splits(splits: dict[str, str]) -> dict[str, range]:
    return {name: range(*(int(x) for x in bounds.split(":"))) for name, bounds in splits.items()}


@register
class LeRobotSource(SourceAdapter):
    format = "lerobot"

    def __init__(self, input: str, kind: str = "teleop", embodiment: str | None = None, **options: Any) -> None:
        super().__init__(input, **options)
        self.root = Path(input)
        self.kind = kind
        self.embodiment = embodiment

    @cached_property
    def info(self) -> dict[str, Any]:
        path = self.root / "meta" / "info.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable LeRobot info.json: {e}") from None

    @property
    def version(self) -> str:
        return str(self.info.get("codebase_version", ""))

    @property
    def is_v3(self) -> bool:
        return self.version.startswith("v3")

    @cached_property
    def tasks(self) -> dict[int, str]:
        if self.is_v3:
            table = pq.read_table(self.root / "meta" / "tasks.parquet").to_pylist()
            text_column = "task" if table and "task" in table[0] else "__index_level_0__"
            return {row["task_index"]: row[text_column] for row in table}
        return {row["task_index"]: row["task"] for row in _read_jsonl(self.root / "meta" / "tasks.jsonl")}

    @cached_property
    def episodes(self) -> list[dict[str, Any]]:
        """Per-episode metadata rows, sorted by episode_index (v2: episodes.jsonl; v3: meta/episodes parquet)."""
        if self.is_v3:
            files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise ValueError(f"{self.root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet")
            rows = [row for f in files for row in pq.read_table(f).to_pylist()]
        else:
            rows = _read_jsonl(self.root / "meta" / "episodes.jsonl")
        return sorted(rows, key=lambda r: r["episode_index"])

    @cached_property
    def modality(self) -> dict[str, Any]:
        path = self.root / "meta" / "modality.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _v2_path(self, kind: str, episode_index: int, video_key: str = "") -> Path:
        """The file of an episode from info.json's template, or the standard v2 layout when the template
        points nowhere (GR00T's templates put episode_index where the chunk number belongs)."""
        values = {"episode_chunk": episode_index // int(self.info.get("chunks_size", 1000)),
                  "episode_index": episode_index, "video_key": video_key}
        template = self.info.get(f"{kind}_path") or (V2_DATA_PATH if kind == "data" else V2_VIDEO_PATH)
        path = self.root / template.format(**values)
        if not path.exists():
            standard = self.root / (V2_DATA_PATH if kind == "data" else V2_VIDEO_PATH).format(**values)
            if standard.exists():
                return standard
        return path

    def _video_path(self, episode: dict[str, Any], video_key: str) -> Path:
        if self.is_v3:
            template = self.info["video_path"]
            return self.root / template.format(video_key=video_key,
                                               chunk_index=episode[f"videos/{video_key}/chunk_index"],
                                               file_index=episode[f"videos/{video_key}/file_index"])
        return self._v2_path("video", episode["episode_index"], video_key)

    def _data_path(self, episode: dict[str, Any]) -> Path:
        if self.is_v3:
            return self.root / self.info["data_path"].format(chunk_index=episode["data/chunk_index"],
                                                             file_index=episode["data/file_index"])
        return self._v2_path("data", episode["episode_index"])

    def camera_name(self, video_key: str) -> str:
        for name, entry in self.modality.get("video", {}).items():
            if entry.get("original_key") == video_key:
                return safe_name(name)
        return safe_name(video_key.removeprefix("observation.images."))

    @cached_property
    def video_keys(self) -> list[str]:
        """Video features that have files; info.json's others are warned about and left out."""
        keys = []
        for key, feature in sorted(self.info["features"].items()):
            if feature.get("dtype") != "video":
                continue
            if any(self._video_path(ep, key).exists() for ep in self.episodes):
                keys.append(key)
            else:
                warnings.warn(f"{self.root / 'meta' / 'info.json'}: video key {key!r} has no files; left out",
                              InputWarning, stacklevel=2)
        return keys

    def _check_info(self) -> None:
        where = self.root / "meta" / "info.json"
        info, episodes = self.info, self.episodes
        found = {"total_episodes": len(episodes), "total_frames": sum(int(ep["length"]) for ep in episodes),
                 "total_videos": len(episodes) * len(self.video_keys), "total_tasks": len(self.tasks)}
        for name, actual in found.items():
            if name in info and info[name] != actual:
                warnings.warn(f"{where}: {name} is {info[name]}, the files hold {actual}", InputWarning, stacklevel=2)
        indices = {ep["episode_index"] for ep in episodes}
        for split, span in _parse_splits(info.get("splits", {})).items():
            if set(span) != indices & set(span) or not indices & set(span):
                warnings.warn(f"{where}: split {split!r} is {span.start}:{span.stop} but the episodes are "
                              f"{min(indices)}..{max(indices)}", InputWarning, stacklevel=2)

    def array_features(self) -> dict[str, dict[str, Any]]:
        return {key: f for key, f in sorted(self.info["features"].items())
                if f.get("dtype") not in ("video", "image", "string") and key not in BOOKKEEPING_COLUMNS}

    def array_name(self, feature_key: str) -> str:
        return ARRAY_NAMES.get(feature_key, safe_name(feature_key))

    def _slices(self, array_name: str, feature: dict[str, Any]) -> tuple[Slice, ...]:
        if array_name in self.modality:
            return tuple(Slice(name, part["start"], part["end"])
                         for name, part in sorted(self.modality[array_name].items(), key=lambda kv: kv[1]["start"]))
        return ()

    def specs(self) -> list[SourceSpec]:
        self._check_info()
        fps = float(self.info["fps"])
        cameras = {}
        for key in self.video_keys:
            shape = dict(zip(self.info["features"][key].get("names", ["height", "width", "channel"]),
                             self.info["features"][key]["shape"], strict=False))
            height, width = int(shape["height"]), int(shape["width"])
            cameras[self.camera_name(key)] = CameraSpec(height, width, codec_for_frames(height, width).to_json())
        arrays = {
            self.array_name(key): ArraySpec(str(np.dtype(f["dtype"])), tuple(f["shape"]),
                                            self._slices(self.array_name(key), f))
            for key, f in self.array_features().items()
        }
        embodiment = self.embodiment or safe_name(str(self.info.get("robot_type") or "unknown")).lower()
        return [SourceSpec(name=self.default_name().lower(), kind=self.kind, format=self.format,
                           embodiment=embodiment, fps=fps, cameras=cameras, arrays=arrays, uri=str(self.root),
                           description=f"LeRobot {self.version} dataset {self.root.name}")]

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=f"episode_{ep['episode_index']:06d}", path=str(self._data_path(ep)),
                         options={"position": i})
                for i, ep in enumerate(self.episodes)]

    def _splits_of(self, episode_index: int) -> str:
        for split, span in _parse_splits(self.info.get("splits", {})).items():
            if episode_index in span:
                return safe_name(split)
        return "train"

    def _rows(self, episode: dict[str, Any], path: Path):  # noqa: ANN202 - a pyarrow Table
        if self.is_v3:
            # many episodes share a file: read only the row groups that hold this one's index range
            return pq.read_table(path, filters=[("index", ">=", episode["dataset_from_index"]),
                                                ("index", "<", episode["dataset_to_index"])])
        table = pq.read_table(path)
        if "episode_index" in table.column_names:
            table = table.filter(pc.equal(table.column("episode_index"), episode["episode_index"]))
        return table

    def _frames(self, episode: dict[str, Any], video_key: str, num_steps: int) -> np.ndarray:
        path = self._video_path(episode, video_key)
        if not path.exists():
            raise FileNotFoundError(f"{path}: video of {video_key!r} for episode {episode['episode_index']} is missing")
        start = 0
        if self.is_v3:
            start = round(float(episode[f"videos/{video_key}/from_timestamp"]) * float(self.info["fps"]))
        available = probe_video(path).num_frames - start
        if available < num_steps:
            raise ValueError(f"{path}: {available} video frames for {num_steps} data rows of episode "
                             f"{episode['episode_index']}")
        return decode_frames(path, start, start + num_steps)

    def read(self, item: WorkItem) -> Iterator[Episode]:
        spec = self.specs_cache
        episode = self.episodes[item.options["position"]]
        path = Path(item.path)
        table = self._rows(episode, path)
        num_steps = table.num_rows
        if num_steps != int(episode["length"]):
            raise ValueError(f"{path}: {num_steps} rows for episode {episode['episode_index']}, its metadata says "
                             f"{episode['length']}")
        arrays = {}
        for key in self.array_features():
            if key not in table.column_names:
                raise ValueError(f"{path}: column {key!r} declared in info.json is missing")
            name = self.array_name(key)
            values = np.asarray(table.column(key).to_pylist(), dtype=spec.arrays[name].dtype)
            arrays[name] = values.reshape(num_steps, *spec.arrays[name].shape)
        frames = {self.camera_name(key): self._frames(episode, key, num_steps) for key in self.video_keys}
        task_indices = table.column("task_index").to_pylist() if "task_index" in table.column_names else []
        instructions = list(dict.fromkeys(self.tasks[i] for i in task_indices))
        annotations = {key: sorted({self.tasks.get(i, str(i)) for i in table.column(key).to_pylist()})
                       for key in table.column_names if key.startswith("annotation.")}
        yield Episode(
            source=spec.name,
            native_key=f"{self.root.name}/episode_{episode['episode_index']:06d}",
            num_steps=num_steps,
            frames=frames,
            arrays=arrays,
            language="; ".join(instructions) or None,
            split=self._splits_of(episode["episode_index"]),
            info={"episode_index": episode["episode_index"], "tasks": list(episode.get("tasks", [])),
                  "annotations": annotations, "lerobot_version": self.version},
        )

    @cached_property
    def specs_cache(self) -> SourceSpec:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)
            return self.specs()[0]
