"""ManiSkill3 trajectories: ``trajectory.*.h5`` beside a ``.json`` of the same stem (``env_info``, and
``episodes[{episode_id, episode_seed, control_mode, elapsed_steps, reset_kwargs, success}]``).

Each ``traj_<id>`` holds ``actions`` (T, A), per-step ``terminated``/``truncated``/``success`` (T) and
``env_states`` and ``obs`` with T+1 entries (the state after the last action too). Step t pairs the
observation before action t with it: the first T entries are kept, the final state goes to the episode's
info. ``obs/sensor_data/<camera>/rgb`` become cameras; ``obs/agent/*`` is concatenated into ``state``;
``env_states/**`` into ``sim_state``; each with one named slice per leaf. ``obs`` may be absent (state-only
recordings). One work item is one trajectory.

Options: ``kind`` (default "sim"), ``fps`` (default: env_kwargs' control_freq, else ManiSkill3's 20 Hz).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from wamdata.format.schema import ArraySpec, CameraSpec, Episode, Slice, SourceKind, SourceSpec
from wamdata.media.codec import codec_for_frames
from wamdata.sources.base import (
    InputError,
    SourceAdapter,
    WorkItem,
    chosen_fps,
    common_length,
    described,
    entry_of,
    find_files,
    laid_end_to_end,
    open_hdf5,
    register,
    require_positive,
    safe_name,
)

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
    return laid_end_to_end([(name, int(np.prod(dataset.shape[1:]))) for name, dataset in leaves])


@register
class ManiSkillSource(SourceAdapter):
    format = "maniskill"

    @dataclass(frozen=True)
    class Options:
        """``kind``: the source kind. ``fps``: the control rate (default: the recording's control_freq, else
        ManiSkill3's default 20 Hz, said as a DefaultChosen warning)."""

        kind: SourceKind = "sim"
        fps: float | None = None

        def __post_init__(self) -> None:
            require_positive(self, "fps")

    @staticmethod
    def _metadata(path: Path) -> dict[str, Any]:
        """The recording's .json, checked for what is read from it: env_info (a mapping) and episodes."""
        where = path.with_suffix(".json")
        try:
            meta = json.loads(where.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{where}: ManiSkill metadata unreadable: {e}") from None
        env_info = meta.get("env_info", {}) if isinstance(meta, dict) else None
        if not isinstance(env_info, dict) or not isinstance(env_info.get("env_kwargs", {}), dict):
            raise InputError(f"{where}: not ManiSkill metadata (a mapping with env_info {{env_kwargs}} and episodes)")
        episodes = meta.get("episodes")
        if not isinstance(episodes, list) or not all(isinstance(ep, dict) and "episode_id" in ep for ep in episodes):
            raise InputError(f"{where}: episodes must be a list of {{episode_id, ...}} entries")
        if not episodes:
            raise InputError(f"{where}: lists no episodes")
        return meta

    @cached_property
    def files(self) -> dict[Path, tuple[dict[str, Any], SourceSpec] | Exception]:
        """Each recording's metadata and spec, or why it cannot be read (its work item is then quarantined)."""
        paths = find_files(self.input, (".h5",), "ManiSkill trajectories")
        return described({path: path for path in paths}, self._described)

    def _described(self, path: Path) -> tuple[dict[str, Any], SourceSpec]:
        meta = self._metadata(path)
        return meta, self._spec_of(path, meta)

    def _spec_of(self, path: Path, meta: dict[str, Any]) -> SourceSpec:
        env_info = meta.get("env_info", {})
        kwargs = env_info.get("env_kwargs", {})
        cameras, arrays = {}, {}
        with open_hdf5(path) as f:
            listed = [f"traj_{ep['episode_id']}" for ep in meta["episodes"]]
            present = [name for name in listed if name in f]
            if not present:
                raise InputError(f"{path}: none of the trajectories {path.with_suffix('.json').name} lists is in "
                                 f"the file ({', '.join(listed[:3])}{', ...' if len(listed) > 3 else ''})")
            traj = f[present[0]]
            for key, name in STEP_ARRAYS.items():
                if key in traj:
                    arrays[name] = ArraySpec(traj[key].dtype.name, traj[key].shape[1:])
            for group, name in (("env_states", "sim_state"), ("obs/agent", "state")):
                layout = _concat_layout(_leaves(traj[group])) if group in traj else ()
                if layout:
                    arrays[name] = ArraySpec("float32", (layout[-1].stop,), layout)
            for camera, rgb in _cameras(traj):
                height, width = rgb.shape[1:3]
                cameras[camera] = CameraSpec(height, width, codec_for_frames(height, width).to_json())
        robots = kwargs.get("robot_uids") or "maniskill_agent"
        return SourceSpec(
            name=safe_name(env_info.get("env_id", "maniskill")).lower(), kind=self.options.kind, format=self.format,
            embodiment=safe_name(robots if isinstance(robots, str) else "_".join(robots)).lower(),
            fps=chosen_fps(self.options.fps, kwargs.get("control_freq") or None, MANISKILL_CONTROL_HZ,
                           str(path.with_suffix(".json")), "ManiSkill3's default control_freq"),
            cameras=cameras, arrays=arrays,
            uri=str(self.input), description=f"ManiSkill3 {env_info.get('env_id')}",
        )

    def describe(self) -> list[SourceSpec]:
        return [entry[1] for entry in self.files.values() if not isinstance(entry, Exception)]

    def work_items(self) -> list[WorkItem]:
        return self.work_items_of(self.files, lambda entry: [(f"traj_{ep['episode_id']}", {"episode": ep})
                                                             for ep in entry[0]["episodes"]])

    def read(self, item: WorkItem) -> Iterator[Episode]:
        path = Path(item.path)
        meta, own_spec = entry_of(self.files, Path(path))
        spec = self.spec_of(own_spec.name)  # merged with the other recordings of the same environment
        episode = item.options["episode"]
        traj_name = f"traj_{episode['episode_id']}"
        with open_hdf5(path) as f:
            if traj_name not in f:
                raise InputError(f"{path}: {traj_name} is listed in {path.with_suffix('.json').name} but not in the "
                                 "file")
            traj = f[traj_name]
            steps = {name: traj[key] for key, name in STEP_ARRAYS.items() if key in traj}
            if "action" not in steps:
                raise InputError(f"{path}: {traj_name} has no actions")
            num_steps = common_length({name: len(d) for name, d in steps.items()}, f"{path}: {traj_name}")
            if episode.get("elapsed_steps") not in (None, num_steps):
                raise InputError(f"{path}: {traj_name} has {num_steps} actions, the json says elapsed_steps "
                                 f"{episode['elapsed_steps']}")
            # observations and states hold one entry more: the state after the last action too
            observed = {f"camera {camera}": len(rgb) for camera, rgb in _cameras(traj)}
            observed |= {f"{group}/{name}": len(d) for group in ("env_states", "obs/agent") if group in traj
                         for name, d in _leaves(traj[group])}
            entries = common_length(observed, f"{path}: {traj_name}") if observed else num_steps + 1
            if entries != num_steps + 1:
                raise InputError(f"{path}: {traj_name} has {entries} observations and states for {num_steps} actions "
                                 f"(expected {num_steps + 1})")
            arrays = {name: dataset[()] for name, dataset in steps.items()}
            info: dict[str, Any] = dict(episode)
            if "env_states" in traj:
                states = _stacked(traj["env_states"])
                arrays["sim_state"], info["final_sim_state"] = states[:num_steps], states[num_steps].tolist()
            if "obs/agent" in traj:
                arrays["state"] = _stacked(traj["obs/agent"])[:num_steps]
            frames = {camera: rgb[:num_steps] for camera, rgb in _cameras(traj)}
        info["env_info"] = meta.get("env_info", {})
        yield Episode(
            source=spec.name, native_key=item.key, num_steps=num_steps, frames=frames, arrays=arrays, info=info,
        )


def _cameras(traj: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    """(camera name, its rgb dataset) of each sensor that records colour (depth-only sensors have none)."""
    sensors = traj.get("obs/sensor_data", {})
    return [(safe_name(camera), sensors[camera]["rgb"]) for camera in sorted(sensors) if "rgb" in sensors[camera]]


def _stacked(group: h5py.Group) -> np.ndarray:
    """A group's leaves, flattened per entry and laid end to end (as ``_concat_layout`` names them), float32."""
    return np.concatenate([d[()].reshape(len(d), -1).astype(np.float32) for _, d in _leaves(group)], axis=1)
