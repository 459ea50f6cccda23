"""LeRobot datasets: v2.0 / v2.1 (one parquet + one mp4 per episode, meta/episodes.jsonl, meta/tasks.jsonl)
and v3.0 (meta/episodes/chunk-*/file-*.parquet; many episodes per data and video file, located by
dataset_from_index/to_index and videos/<key>/from_timestamp/to_timestamp).

Every non-video feature becomes a per-step array (``observation.state`` -> ``state``, ``action`` ->
``action``, ``next.reward`` -> ``next_reward``, ...; only the row bookkeeping ``index``/``episode_index`` is
dropped); ``meta/modality.json`` (GR00T flavour) slices become named slices. ``info.json`` is checked
against the files: a video key with no files, wrong totals or split ranges are warned about and the data
that is there is ingested. One work item is one episode.

Options: ``kind`` (default "teleop"), ``embodiment`` (default: info.json's robot_type).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wamdata.format.schema import NAME_PATTERN, ArraySpec, CameraSpec, Episode, Slice, SourceKind, SourceSpec
from wamdata.media.codec import codec_for_frames
from wamdata.media.decode import decode_frames, probe_video
from wamdata.sources.base import InputError, InputWarning, SourceAdapter, WorkItem, register, safe_name

BOOKKEEPING_COLUMNS = ("index", "episode_index", "frame_index")
ARRAY_NAMES = {"observation.state": "state", "action": "action"}
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def _read_jsonl(path: Path) -> list[Any]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: line {number} is not JSON: {e}") from None
    return rows


def _with_fields(rows: list[Any], fields: tuple[str, ...], where: Path) -> list[dict[str, Any]]:
    """``rows``, each checked to be a mapping that holds ``fields``: later lookups need no check of their own."""
    for number, row in enumerate(rows, start=1):
        missing = [name for name in fields if not isinstance(row, dict) or name not in row]
        if missing:
            raise InputError(f"{where}: entry {number} has no {', '.join(map(repr, missing))}")
    return rows


@register
class LeRobotSource(SourceAdapter):
    format = "lerobot"

    @dataclass(frozen=True)
    class Options:
        """``kind``: the source kind. ``embodiment``: the embodiment name (default: info.json's robot_type)."""

        kind: SourceKind = "teleop"
        embodiment: str | None = None

        def __post_init__(self) -> None:
            if self.embodiment is not None and not NAME_PATTERN.match(self.embodiment):
                raise ValueError(f"option 'embodiment' must be a name of [A-Za-z0-9_], got {self.embodiment!r}")

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.root = Path(input)
        self.info_path = self.root / "meta" / "info.json"

    @cached_property
    def info(self) -> dict[str, Any]:
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{self.info_path}: not a readable LeRobot info.json: {e}") from None
        fps = info.get("fps") if isinstance(info, dict) else None
        if isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0 or not isinstance(
                info.get("features"), dict):
            raise InputError(f"{self.info_path}: not a LeRobot info.json (it needs fps, a positive number, and "
                             "features)")
        for key, feature in info["features"].items():
            if not isinstance(feature, dict) or "dtype" not in feature or not isinstance(feature.get("shape"), list):
                raise InputError(f"{self.info_path}: feature {key!r} needs a dtype and a shape")
        return info

    @property
    def version(self) -> str:
        return str(self.info.get("codebase_version", ""))

    @property
    def is_v3(self) -> bool:
        return self.version.startswith("v3")

    @property
    def source_name(self) -> str:
        return self.default_name().lower()

    @cached_property
    def tasks(self) -> dict[int, str]:
        if self.is_v3:
            path = self.root / "meta" / "tasks.parquet"
            table = pq.read_table(path).to_pylist()
            text_column = "task" if table and "task" in table[0] else "__index_level_0__"
            return {row["task_index"]: row[text_column] for row in _with_fields(table, ("task_index", text_column),
                                                                                  path)}
        path = self.root / "meta" / "tasks.jsonl"
        return {row["task_index"]: row["task"] for row in _with_fields(_read_jsonl(path), ("task_index", "task"), path)}

    @cached_property
    def episodes(self) -> list[dict[str, Any]]:
        """Per-episode metadata rows, sorted by episode_index (v2: episodes.jsonl; v3: meta/episodes parquet)."""
        if self.is_v3:
            where = self.root / "meta" / "episodes"
            files = sorted(where.glob("chunk-*/file-*.parquet"))
            if not files:
                raise InputError(f"{where}: no chunk-*/file-*.parquet")
            rows = [row for f in files for row in pq.read_table(f).to_pylist()]
            fields = ("episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                      "dataset_to_index")
        else:
            where = self.root / "meta" / "episodes.jsonl"
            rows = _read_jsonl(where)
            fields = ("episode_index", "length")
        if not rows:
            raise InputError(f"{where}: no episodes")
        return sorted(_with_fields(rows, fields, where), key=lambda r: r["episode_index"])

    @cached_property
    def modality(self) -> dict[str, Any]:
        path = self.root / "meta" / "modality.json"
        if not path.exists():
            return {}
        try:
            modality = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not JSON: {e}") from None
        if not isinstance(modality, dict) or not all(isinstance(group, dict) for group in modality.values()):
            raise InputError(f"{path}: not a mapping of modalities to their parts")
        return modality

    @cached_property
    def splits(self) -> dict[str, range]:
        """info.json's splits ({"train": "0:100"}) as ranges of episode indices."""
        splits = self.info.get("splits", {})
        try:
            return {name: range(*map(int, bounds.split(":", 1))) for name, bounds in splits.items()}
        except (AttributeError, TypeError, ValueError):
            raise InputError(f"{self.info_path}: splits must map each split to 'start:stop', got {splits!r}") from None

    def _formatted(self, template: str, **values: Any) -> Path:
        try:
            return self.root / template.format(**values)
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(f"{self.info_path}: path template {template!r} does not fit: {e!r}") from None

    def _v3_value(self, episode: dict[str, Any], column: str) -> Any:
        if column not in episode:
            raise InputError(f"{self.root / 'meta' / 'episodes'}: episode {episode['episode_index']} has no "
                             f"{column!r}")
        return episode[column]

    def _v3_template(self, kind: str) -> str:
        template = self.info.get(f"{kind}_path")
        if not isinstance(template, str):
            raise InputError(f"{self.info_path}: a v3 info.json needs {kind}_path")
        return template

    def _v2_path(self, kind: str, episode_index: int, video_key: str = "") -> Path:
        """The file of an episode from info.json's template, or the standard v2 layout when the template
        points nowhere (GR00T's templates put episode_index where the chunk number belongs)."""
        values = {"episode_chunk": episode_index // int(self.info.get("chunks_size", 1000)),
                  "episode_index": episode_index, "video_key": video_key}
        standard = V2_DATA_PATH if kind == "data" else V2_VIDEO_PATH
        path = self._formatted(self.info.get(f"{kind}_path") or standard, **values)
        if not path.exists() and self._formatted(standard, **values).exists():
            return self._formatted(standard, **values)
        return path

    def _video_path(self, episode: dict[str, Any], video_key: str) -> Path:
        if self.is_v3:
            return self._formatted(self._v3_template("video"), video_key=video_key,
                                   chunk_index=self._v3_value(episode, f"videos/{video_key}/chunk_index"),
                                   file_index=self._v3_value(episode, f"videos/{video_key}/file_index"))
        return self._v2_path("video", episode["episode_index"], video_key)

    def _data_path(self, episode: dict[str, Any]) -> Path:
        if self.is_v3:
            return self._formatted(self._v3_template("data"), chunk_index=episode["data/chunk_index"],
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
            if feature["dtype"] != "video":
                continue
            if any(self._video_path(ep, key).exists() for ep in self.episodes):
                keys.append(key)
            else:
                warnings.warn(f"{self.info_path}: video key {key!r} has no files; left out", InputWarning,
                              stacklevel=2)
        return keys

    def _check_info(self) -> None:
        info, episodes = self.info, self.episodes
        found = {"total_episodes": len(episodes), "total_frames": sum(int(ep["length"]) for ep in episodes),
                 "total_videos": len(episodes) * len(self.video_keys), "total_tasks": len(self.tasks)}
        for name, actual in found.items():
            if name in info and info[name] != actual:
                warnings.warn(f"{self.info_path}: {name} is {info[name]}, the files hold {actual}", InputWarning,
                              stacklevel=2)
        indices = {ep["episode_index"] for ep in episodes}
        for split, span in self.splits.items():
            if set(span) != indices & set(span) or not indices & set(span):
                warnings.warn(f"{self.info_path}: split {split!r} is {span.start}:{span.stop} but the episodes are "
                              f"{min(indices)}..{max(indices)}", InputWarning, stacklevel=2)

    def array_features(self) -> dict[str, dict[str, Any]]:
        return {key: f for key, f in sorted(self.info["features"].items())
                if f["dtype"] not in ("video", "image", "string") and key not in BOOKKEEPING_COLUMNS}

    def array_name(self, feature_key: str) -> str:
        return ARRAY_NAMES.get(feature_key, safe_name(feature_key))

    def _slices(self, array_name: str) -> tuple[Slice, ...]:
        """modality.json's named parts of the array (GR00T flavour), in the order they lie in it."""
        parts = self.modality.get(array_name, {})
        if not all(isinstance(part, dict) and isinstance(part.get("start"), int) and isinstance(part.get("end"), int)
                   for part in parts.values()):
            raise InputError(f"{self.root / 'meta' / 'modality.json'}: every part of {array_name!r} needs a start and "
                             "an end")
        return tuple(Slice(name, part["start"], part["end"])
                     for name, part in sorted(parts.items(), key=lambda kv: kv[1]["start"]))

    def _array_spec(self, key: str, feature: dict[str, Any]) -> ArraySpec:
        try:
            dtype = np.dtype(feature["dtype"])
        except TypeError:
            raise InputError(f"{self.info_path}: feature {key!r} has dtype {feature['dtype']!r}, not a numeric "
                             "type") from None
        return ArraySpec(str(dtype), tuple(feature["shape"]), self._slices(self.array_name(key)))

    def _camera_spec(self, key: str) -> CameraSpec:
        feature = self.info["features"][key]
        shape = dict(zip(feature.get("names") or ["height", "width", "channel"], feature["shape"], strict=False))
        if "height" not in shape or "width" not in shape:
            raise InputError(f"{self.info_path}: video feature {key!r} does not name its height and width")
        height, width = int(shape["height"]), int(shape["width"])
        return CameraSpec(height, width, codec_for_frames(height, width).to_json())

    def describe(self) -> list[SourceSpec]:
        self._check_info()
        cameras = {self.camera_name(key): self._camera_spec(key) for key in self.video_keys}
        arrays = {self.array_name(key): self._array_spec(key, f) for key, f in self.array_features().items()}
        embodiment = self.options.embodiment or safe_name(str(self.info.get("robot_type") or "unknown")).lower()
        return [SourceSpec(name=self.source_name, kind=self.options.kind, format=self.format,
                           embodiment=embodiment, fps=float(self.info["fps"]), cameras=cameras, arrays=arrays,
                           uri=str(self.root), description=f"LeRobot {self.version} dataset {self.root.name}")]

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=f"episode_{ep['episode_index']:06d}", path=str(self._data_path(ep)),
                         options={"position": i})
                for i, ep in enumerate(self.episodes)]

    def _splits_of(self, episode_index: int) -> str:
        for split, span in self.splits.items():
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
            start = round(float(self._v3_value(episode, f"videos/{video_key}/from_timestamp")) * self.info["fps"])
        available = probe_video(path).num_frames - start
        if available < num_steps:
            raise InputError(f"{path}: {available} video frames for {num_steps} data rows of episode "
                             f"{episode['episode_index']}")
        return decode_frames(path, start, start + num_steps)

    def read(self, item: WorkItem) -> Iterator[Episode]:
        spec = self.spec_of(self.source_name)
        episode = self.episodes[item.options["position"]]
        path = Path(item.path)
        table = self._rows(episode, path)
        num_steps = table.num_rows
        if num_steps != int(episode["length"]):
            raise InputError(f"{path}: {num_steps} rows for episode {episode['episode_index']}, its metadata says "
                             f"{episode['length']}")
        arrays = {}
        for key in self.array_features():
            if key not in table.column_names:
                raise InputError(f"{path}: column {key!r} declared in info.json is missing")
            array = spec.arrays[self.array_name(key)]
            try:
                values = np.asarray(table.column(key).to_pylist(), dtype=array.dtype).reshape(num_steps, *array.shape)
            except (TypeError, ValueError) as e:
                raise InputError(f"{path}: column {key!r} does not hold {array.dtype} values of shape "
                                 f"{list(array.shape)} (info.json): {e}") from None
            arrays[self.array_name(key)] = values
        frames = {self.camera_name(key): self._frames(episode, key, num_steps) for key in self.video_keys}
        task_indices = table.column("task_index").to_pylist() if "task_index" in table.column_names else []
        unknown = sorted(set(task_indices) - set(self.tasks))
        if unknown:
            raise InputError(f"{path}: task_index {unknown[0]} of episode {episode['episode_index']} is not in the "
                             "dataset's tasks")
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
