"""robomimic HDF5, converted (LIBERO, RoboCasa, MimicGen) and raw robosuite collections (robosuite v1,
LIBERO raw): ``data/demo_i/{actions, states, ...}``.

Converted files add ``obs/*`` (images ``<camera>_image`` (T,H,W,3) uint8 become cameras; the low-dimensional
observations are concatenated, in sorted key order, into ``state`` with one named slice per key),
``rewards`` and ``dones``; ``next_obs`` is left out, since next_obs[t] is obs[t+1] by construction. Raw
files carry no images and become state/action episodes: ``states`` (the flattened MuJoCo state) is kept as
``sim_state`` in both flavours, and ``joint_torques`` when present. LIBERO renders its cameras upside down;
those frames are rotated 180 degrees (recorded in each episode's info). The input is one file or a folder
of them; one work item is one demo. Files are read in natural order (run_2 before run_10).

Options: ``kind`` (default "sim"), ``fps`` (default: each file's control_freq, else robosuite's 20 Hz).
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
    json_value,
    laid_end_to_end,
    natural_key,
    open_hdf5,
    register,
    require_positive,
    safe_name,
)

ROBOSUITE_CONTROL_HZ = 20.0  # robosuite's default control_freq, for files whose env_info does not say
OSC_POSE_SLICES = (
    Slice("eef_delta_pos", 0, 3, "m (scaled to [-1, 1])", "end-effector position delta, OSC_POSE controller"),
    Slice("eef_delta_rot", 3, 6, "rad (axis-angle, scaled to [-1, 1])", "end-effector rotation delta"),
)
GRIPPER_SLICE = Slice("gripper", 6, 7, None, "gripper command: -1 open, +1 close")


def _json_object(text: Any, where: str) -> dict[str, Any] | None:
    """An attribute that holds a JSON object (env_args, env_info, problem_info, ep_meta), parsed; None if absent."""
    if text is None:
        return None
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not JSON: {e}") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: holds {type(value).__name__}, not a JSON object")
    return value


def _is_camera(dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    """RGB images, (H, W, 3) uint8 per step: robomimic's ``<camera>_image``, LIBERO's ``<camera>_rgb``."""
    return np.dtype(dtype) == np.uint8 and len(shape) == 3 and shape[-1] == 3


def _camera_name(key: str) -> str:
    return safe_name(key.removesuffix("_image").removesuffix("_rgb"))


class RobomimicFile:
    """What one file says about itself: environment, controller, robots, language, flavour."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open_hdf5(path) as f:
            data = f.get("data")
            if not isinstance(data, h5py.Group):
                raise InputError(f"{path}: no data group (robomimic and robosuite files keep their demos in data/)")
            self.attrs = {k: json_value(v) for k, v in data.attrs.items()}
            self.env_args, self.env_info, self.problem_info = (
                _json_object(self.attrs.get(name), f"{path}: data attribute {name}") or {}
                for name in ("env_args", "env_info", "problem_info"))
            # converted files keep the environment's kwargs in env_args, raw collections in env_info itself
            self.env_kwargs = self.env_args.get("env_kwargs", self.env_info)
            if not isinstance(self.env_kwargs, dict):
                raise InputError(f"{path}: data attribute env_args: env_kwargs is not a mapping")
            rate = self.env_kwargs.get("control_freq")
            if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
                raise InputError(f"{path}: control_freq {rate!r} is not a positive number")
            self.control_freq = None if rate is None else float(rate)
            self.demos = sorted((k for k in data if k.startswith("demo")), key=natural_key)
            if not self.demos:
                raise InputError(f"{path}: no data/demo_* groups")
            first = data[self.demos[0]]
            self.converted = "obs" in first
            self.layout = {name: (ds.dtype.str, ds.shape[1:]) for name, ds in self._datasets(first)}

    @staticmethod
    def _datasets(demo: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
        out = [(name, demo[name]) for name in ("actions", "states", "rewards", "dones", "joint_torques")
               if name in demo]
        if "obs" in demo:
            out += [(f"obs/{k}", demo["obs"][k]) for k in sorted(demo["obs"])]
        return out

    @property
    def env_name(self) -> str:
        return str(self.env_args.get("env_name") or self.env_info.get("env_name") or self.attrs.get("env") or "env")

    @property
    def controller(self) -> dict[str, Any]:
        return self.env_kwargs.get("controller_configs") or {}

    @property
    def robots(self) -> list[str]:
        robots = self.env_kwargs.get("robots") or ["robot"]
        return [robots] if isinstance(robots, str) else list(robots)

    @property
    def is_libero(self) -> bool:
        return "libero" in self.env_name.lower() or "bddl_file_name" in self.attrs or "bddl_file" in str(
            self.env_kwargs)

    @property
    def source_name(self) -> str:
        return safe_name(self.env_name).lower()

    def action_slices(self, width: int) -> tuple[Slice, ...]:
        if self.controller.get("type") != "OSC_POSE" or len(self.robots) != 1 or width not in (6, 7):
            return ()
        return OSC_POSE_SLICES + ((GRIPPER_SLICE,) if width == 7 else ())


@register
class RobomimicSource(SourceAdapter):
    format = "robomimic"

    @dataclass(frozen=True)
    class Options:
        """``kind``: the source kind of every file. ``fps``: the control rate (default: each file's
        control_freq, else robosuite's default 20 Hz, said as a DefaultChosen warning)."""

        kind: SourceKind = "sim"
        fps: float | None = None

        def __post_init__(self) -> None:
            require_positive(self, "fps")

    @cached_property
    def files(self) -> dict[Path, tuple[RobomimicFile, SourceSpec] | Exception]:
        """Each file's description and spec, or why it cannot be read (its work item is then quarantined)."""
        paths = find_files(self.input, (".hdf5", ".h5"), "robomimic / robosuite HDF5 files")
        return described({path: path for path in paths}, self._described)

    def _described(self, path: Path) -> tuple[RobomimicFile, SourceSpec]:
        file = RobomimicFile(path)
        return file, self._spec_of(file)

    def _spec_of(self, file: RobomimicFile) -> SourceSpec:
        cameras, arrays, state_parts, state_dtype = {}, {}, [], None
        for name, (dtype, shape) in file.layout.items():
            if name.startswith("obs/"):
                key = name.removeprefix("obs/")
                if _is_camera(dtype, shape):
                    codec = codec_for_frames(shape[0], shape[1]).to_json()
                    cameras[_camera_name(key)] = CameraSpec(shape[0], shape[1], codec)
                elif len(shape) <= 1:
                    state_parts.append((key, shape[0] if shape else 1))
                    state_dtype = np.result_type(state_dtype or dtype, dtype)
                else:
                    arrays[f"obs_{safe_name(key)}"] = ArraySpec(np.dtype(dtype).name, shape)
            elif name == "actions":
                arrays["action"] = ArraySpec(np.dtype(dtype).name, shape, file.action_slices(shape[0]))
            else:
                array = {"states": "sim_state", "rewards": "reward", "dones": "done"}.get(name, name)
                arrays[array] = ArraySpec(np.dtype(dtype).name, shape)
        if state_parts:
            slices = laid_end_to_end(state_parts)
            arrays["state"] = ArraySpec(np.dtype(state_dtype).name, (slices[-1].stop,), slices)
        flavour = "robomimic-converted" if file.converted else "raw robosuite collection"
        return SourceSpec(
            name=file.source_name, kind=self.options.kind, format=self.format,
            embodiment=safe_name("_".join(file.robots)).lower(), cameras=cameras, arrays=arrays,
            fps=chosen_fps(self.options.fps, file.control_freq, ROBOSUITE_CONTROL_HZ, str(file.path),
                           "robosuite's default control_freq"),
            uri=str(self.input), description=f"{flavour}: {file.env_name}",
        )

    def describe(self) -> list[SourceSpec]:
        return [entry[1] for entry in self.files.values() if not isinstance(entry, Exception)]

    def work_items(self) -> list[WorkItem]:
        return self.work_items_of(self.files, lambda entry: [(demo, {"demo": demo}) for demo in entry[0].demos])

    def read(self, item: WorkItem) -> Iterator[Episode]:
        path = Path(item.path)
        file, own_spec = entry_of(self.files, Path(path))
        spec = self.spec_of(own_spec.name)  # merged with the other files of the same environment
        demo_name = item.options["demo"]
        with open_hdf5(path) as f:
            demo = f["data"][demo_name]
            arrays: dict[str, np.ndarray] = {}
            frames: dict[str, np.ndarray] = {}
            state_parts = []
            for name, dataset in RobomimicFile._datasets(demo):
                key = name.removeprefix("obs/")
                if name.startswith("obs/") and _is_camera(dataset.dtype, dataset.shape[1:]):
                    image = dataset[()]
                    frames[_camera_name(key)] = image[:, ::-1, ::-1] if file.is_libero else image
                elif name.startswith("obs/") and dataset.ndim <= 2:
                    state_parts.append(dataset[()].reshape(len(dataset), -1))
                elif name.startswith("obs/"):
                    arrays[f"obs_{safe_name(key)}"] = dataset[()]
                else:
                    array = {"actions": "action", "states": "sim_state", "rewards": "reward", "dones": "done"}
                    arrays[array.get(name, name)] = dataset[()]
            if state_parts:
                arrays["state"] = np.concatenate(state_parts, axis=1).astype(spec.arrays["state"].dtype)
            demo_attrs = {k: json_value(v) for k, v in demo.attrs.items()}
        lengths = {name: len(a) for name, a in arrays.items()} | {f"camera {c}": len(v) for c, v in frames.items()}
        num_steps = common_length(lengths, f"{path}: {demo_name}")
        ep_meta = _json_object(demo_attrs.pop("ep_meta", None), f"{path}: {demo_name} attribute ep_meta")
        info = self._info(file, path, demo_attrs, ep_meta)
        if frames and file.is_libero:
            info["frames"] = "rotated 180 degrees (LIBERO renders its cameras upside down)"
        yield Episode(
            source=spec.name,
            native_key=f"{self.relative(path)}:{demo_name}",
            num_steps=num_steps,
            frames=frames,
            arrays=arrays,
            language=self._language(file, ep_meta),
            info=info,
        )

    @staticmethod
    def _language(file: RobomimicFile, ep_meta: dict[str, Any] | None) -> str | None:
        if ep_meta and ep_meta.get("lang"):
            return str(ep_meta["lang"])
        return file.problem_info.get("language_instruction")

    @staticmethod
    def _info(file: RobomimicFile, path: Path, demo_attrs: dict[str, Any],
              ep_meta: dict[str, Any] | None) -> dict[str, Any]:
        model = demo_attrs.pop("model_file", None)
        if isinstance(model, str) and not model.lstrip().startswith("<"):
            model_path = path.parent / "models" / model
            model = model_path.read_text() if model_path.exists() else model
        info: dict[str, Any] = {
            "file_attrs": {k: v for k, v in file.attrs.items() if k not in ("env_args", "env_info", "problem_info")},
            "env_name": file.env_name,
            "env_args": file.env_args or file.env_info,
            "demo_attrs": demo_attrs,
            "model_xml": model,
        }
        if file.problem_info:
            info["problem_info"] = file.problem_info
        if ep_meta is not None:
            info["ep_meta"] = ep_meta
        return info
