"""ManiSkill3 trajectories: ``trajectory.*.h5`` beside a ``.json`` of the same stem (``env_info``, and
``episodes[{episode_id, episode_seed, control_mode, elapsed_steps, reset_kwargs, success}]``).

Each ``traj_<id>`` holds ``actions`` (T, A), per-step ``terminated``/``truncated``/``success`` (T) and
``env_states`` and ``obs`` with T+1 entries (the state after the last action too). Step t pairs the
observation before action t with it: the first T entries are kept, the final state goes to the episode's
info. ``obs/sensor_data/<camera>/rgb`` become cameras; ``obs/agent/*`` is concatenated into ``state``;
``env_states/**`` into ``sim_state``; each with one named slice per leaf. ``obs`` may be absent (state-only
recordings). One work item is one trajectory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from wamdata.format.schema import ArraySpec, CameraSpec, Episode, Slice, SourceSpec
from wamdata.media.codec import codec_for_frames
from wamdata.sources.base import SourceAdapter, WorkItem, merge_specs, register, safe_name

MANISKILL_CONTROL_HZ = 20.0  # ManiSkill3's default control_freq, for recordings whose env_kwargs do not say
STEP_ARRAYS = {"actions": "action", "terminated": "terminated", "truncated": "truncated", "success": "success"}


def _leaves(group: h5py.Group, prefix: str = "") -> list[tuple[str, h5py.Dataset]]:
    out = []
    for key in sorted(group):
        item = group[key]
        name = f"{prefix}{key}"
        out += _leaves(item, f"{name}/") if isinstance(item, h5py.Group) else [(name, item)]
    return out


def _concat_layout(leaves: list[tuple[str, h5py.Dataset]]) -> tuple[Slice, ...]:
    slices, start = [], 0
    for name, dataset in leaves:
        width = int(np.prod(dataset.shape[1:])) if dataset.ndim > 1 else 1
        slices.append(Slice(safe_name(name), start, start + width))
        start += width
    return tuple(slices)


@register
class ManiSkillSource(SourceAdapter):
    format = "maniskill"

    def __init__(self, input: str, kind: str = "sim", **options: Any) -> None:
        super().__init__(input, **options)
        self.kind = kind

    @cached_property
    def recordings(self) -> list[Path]:
        root = Path(self.input)
        paths = [root] if root.is_file() else sorted(root.rglob("*.h5"))
        if not paths:
            raise FileNotFoundError(f"{root}: no ManiSkill .h5 trajectories")
        return paths

    @staticmethod
    def _metadata(path: Path) -> dict[str, Any]:
        meta = path.with_suffix(".json")
        try:
            return json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{meta}: ManiSkill metadata unreadable: {e}") from None

    def _source_name(self, meta: dict[str, Any]) -> str:
        return safe_name(meta.get("env_info", {}).get("env_id", "maniskill")).lower()

    def _spec_of(self, path: Path, meta: dict[str, Any]) -> SourceSpec:
        env_info = meta.get("env_info", {})
        kwargs = env_info.get("env_kwargs", {})
        first = meta["episodes"][0]["episode_id"]
        cameras, arrays = {}, {}
        with h5py.File(path, "r") as f:
            traj = f[f"traj_{first}"]
            for key, name in STEP_ARRAYS.items():
                if key in traj:
                    arrays[name] = ArraySpec(traj[key].dtype.name, traj[key].shape[1:])
            if "env_states" in traj:
                layout = _concat_layout(_leaves(traj["env_states"]))
                arrays["sim_state"] = ArraySpec("float32", (layout[-1].stop,), layout)
            if "obs" in traj:
                for camera in sorted(traj["obs"].get("sensor_data", {})):
                    rgb = traj["obs"]["sensor_data"][camera].get("rgb")
                    if rgb is not None:
                        height, width = rgb.shape[1:3]
                        codec = codec_for_frames(height, width).to_json()
                        cameras[safe_name(camera)] = CameraSpec(height, width, codec)
                if "agent" in traj["obs"]:
                    layout = _concat_layout(_leaves(traj["obs"]["agent"]))
                    arrays["state"] = ArraySpec("float32", (layout[-1].stop,), layout)
        robots = kwargs.get("robot_uids") or "maniskill_agent"
        return SourceSpec(
            name=self._source_name(meta), kind=self.kind, format=self.format,
            embodiment=safe_name(robots if isinstance(robots, str) else "_".join(robots)).lower(),
            fps=float(kwargs.get("control_freq") or MANISKILL_CONTROL_HZ), cameras=cameras, arrays=arrays,
            uri=str(self.input), description=f"ManiSkill3 {env_info.get('env_id')}",
        )

    @cached_property
    def source_specs(self) -> dict[str, SourceSpec]:
        specs = []
        for path in self.recordings:
            try:
                specs.append(self._spec_of(path, self._metadata(path)))
            except (OSError, ValueError, KeyError, IndexError):
                continue  # its work items fail with the reason and are quarantined
        return {spec.name: spec for spec in merge_specs(specs)}

    def specs(self) -> list[SourceSpec]:
        return list(self.source_specs.values())

    def work_items(self) -> list[WorkItem]:
        items = []
        for path in self.recordings:
            name = path.name if Path(self.input).is_file() else str(path.relative_to(self.input))
            try:
                episodes = self._metadata(path)["episodes"]
            except (ValueError, KeyError) as e:
                items.append(WorkItem(key=name, path=str(path), options={"error": str(e)}))
                continue
            items += [WorkItem(key=f"{name}:traj_{ep['episode_id']}", path=str(path), options={"episode": ep})
                      for ep in episodes]
        return items

    def read(self, item: WorkItem) -> Iterator[Episode]:
        if "error" in item.options:
            raise ValueError(item.options["error"])
        path = Path(item.path)
        meta = self._metadata(path)
        spec = self.source_specs[self._source_name(meta)]
        episode = item.options["episode"]
        traj_name = f"traj_{episode['episode_id']}"
        with h5py.File(path, "r") as f:
            if traj_name not in f:
                raise KeyError(f"{path}: {traj_name} is listed in {path.with_suffix('.json').name} but not in the file")
            traj = f[traj_name]
            num_steps = len(traj["actions"])
            if episode.get("elapsed_steps") not in (None, num_steps):
                raise ValueError(f"{path}: {traj_name} has {num_steps} actions, the json says elapsed_steps "
                                 f"{episode['elapsed_steps']}")
            arrays = {name: traj[key][()] for key, name in STEP_ARRAYS.items() if key in traj}
            info: dict[str, Any] = {k: v for k, v in episode.items()}
            frames = {}
            if "env_states" in traj:
                states = self._stacked(traj["env_states"], num_steps + 1, path, traj_name)
                arrays["sim_state"], info["final_sim_state"] = states[:num_steps], states[num_steps].tolist()
            if "obs" in traj:
                for camera in traj["obs"].get("sensor_data", {}):
                    rgb = traj["obs"]["sensor_data"][camera]["rgb"]
                    if len(rgb) != num_steps + 1:
                        raise ValueError(f"{path}: {traj_name} camera {camera} has {len(rgb)} frames for "
                                         f"{num_steps} actions (expected {num_steps + 1})")
                    frames[safe_name(camera)] = rgb[:num_steps]
                if "agent" in traj["obs"]:
                    arrays["state"] = self._stacked(traj["obs"]["agent"], num_steps + 1, path, traj_name)[:num_steps]
        info["env_info"] = meta.get("env_info", {})
        yield Episode(
            source=spec.name, native_key=f"{item.key}", num_steps=num_steps, frames=frames, arrays=arrays,
            info=info,
        )

    @staticmethod
    def _stacked(group: h5py.Group, expected: int, path: Path, traj: str) -> np.ndarray:
        parts = []
        for name, dataset in _leaves(group):
            if len(dataset) != expected:
                raise ValueError(f"{path}: {traj}/{group.name.split('/')[-1]}/{name} has {len(dataset)} entries, "
                                 f"expected {expected}")
            parts.append(dataset[()].reshape(expected, -1).astype(np.float32))
        return np.concatenate(parts, axis=1)
