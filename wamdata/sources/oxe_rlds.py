"""RLDS datasets (Open X-Embodiment and any other): a TFDS dataset folder, local or gs://, opened with
``tfds.builder_from_directory``; standardized by ``manifests/oxe_standardization.yaml``.

One work item is one tfrecord file of one split (its episodes are read in one pass). Every RGB image
feature becomes a camera, every other per-step tensor an array (the native ``action`` always; ``state``,
``action_eef7``, ``reward``, ``discount``, ``language_embedding``, ... as the data has them). Whether an
episode has frames for a camera and an instruction is decided from its content: all-zero image streams
are dummy cameras and left out of that episode, whatever ``has_image_*`` says.

Options: ``dataset`` (the registry entry to apply; default: the builder's name), ``fps`` (default: the
registry's rate, else 10 Hz).
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import yaml

from wamdata.format.schema import ArraySpec, CameraSpec, Episode, Slice, SourceSpec
from wamdata.media.codec import codec_for_frames
from wamdata.sources.base import (
    InputError,
    SourceAdapter,
    WorkItem,
    chosen_fps,
    json_value,
    laid_end_to_end,
    register,
    require_positive,
    safe_name,
)

STEP_BOOKKEEPING = ("is_first", "is_last")  # derivable from the position in the episode
DEFAULT_FPS = 10.0  # the most common rate among the registry's datasets, for those it does not list
EEF7_SLICES = (Slice("eef_delta_pos", 0, 3), Slice("eef_delta_rot", 3, 6),
               Slice("gripper", 6, 7, None, "1 open, 0 closed"))


@cache
def standardization_registry() -> dict[str, dict[str, Any]]:
    """The packaged registry, keyed by every name and alias."""
    text = resources.files("wamdata").joinpath("resources", "manifests", "oxe_standardization.yaml").read_text()
    registry = {}
    for name, entry in yaml.safe_load(text).items():
        for key in (name, *entry.get("aliases", ())):
            registry[key] = entry
    return registry


def _relative_closedness(x: np.ndarray) -> np.ndarray:
    """+1 close / -1 open / 0 hold -> absolute 1 open / 0 closed; before the first command the gripper is
    in the state opposite to it (as in Octo's rel2abs_gripper_actions)."""
    commands = np.where(x > 0.5, 0.0, np.where(x < -0.5, 1.0, np.nan))
    known = commands[~np.isnan(commands)]
    state = 1.0 - known[0] if len(known) else 1.0
    out = np.empty_like(commands)
    for i, command in enumerate(commands):
        state = state if np.isnan(command) else command
        out[i] = state
    return out


GRIPPER_RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "open_positive": lambda x: np.clip(x, 0.0, 1.0),
    "closed_positive": lambda x: 1.0 - np.clip(x, 0.0, 1.0),
    "relative_closedness": _relative_closedness,
}


def _decode_codepoints(values: np.ndarray) -> str:
    return "".join(chr(c) for c in np.asarray(values).reshape(-1) if c).strip()


@cache
def _builder(directory: str) -> Any:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    # One thread per worker process: Ray runs one task per core, TensorFlow must not take them all. A process
    # that has used TensorFlow already (a driver that read with tfds) keeps its settings.
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    try:
        return tfds.builder_from_directory(directory)
    except OSError as e:  # tfds's DatasetInfoFileError: no or no readable dataset_info.json
        raise InputError(f"{directory}: not an RLDS (TFDS) dataset folder: {e}") from None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested FeaturesDict (the features) or dict (an episode's tensors) as {"a/b": leaf}."""
    import tensorflow_datasets as tfds

    if isinstance(tree, dict | tfds.features.FeaturesDict):
        out = {}
        for key, sub in tree.items():
            out.update(_flatten(sub, f"{prefix}{key}/"))
        return out
    return {prefix.rstrip("/"): tree}


def _parse_ref(ref: str) -> tuple[str, int | None, int | None]:
    match = re.fullmatch(r"([\w/]+)(?:\[(\d+):(\d+)\])?", ref)
    if not match:
        raise ValueError(f"oxe_standardization.yaml: bad reference {ref!r} (use name or name[start:stop])")
    name, start, stop = match.groups()
    return name, int(start) if start else None, int(stop) if stop else None


@register
class OxeRldsSource(SourceAdapter):
    format = "oxe_rlds"

    @dataclass(frozen=True)
    class Options:
        """``dataset``: the standardization registry entry to apply (default: the builder's name). ``fps``: the
        control rate (default: the registry's, else 10 Hz, said as a DefaultChosen warning)."""

        dataset: str | None = None
        fps: float | None = None

        def __post_init__(self) -> None:
            require_positive(self, "fps")
            if self.dataset is not None and self.dataset not in standardization_registry():
                close = difflib.get_close_matches(self.dataset, list(standardization_registry()), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"option 'dataset': {self.dataset!r} is not in oxe_standardization.yaml{hint}")

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.directory = str(input).rstrip("/")

    @property
    def builder(self) -> Any:
        return _builder(self.directory)

    @cached_property
    def dataset_name(self) -> str:
        return self.options.dataset or self.builder.info.name

    @property
    def source_name(self) -> str:
        return safe_name(self.dataset_name).lower()

    @cached_property
    def standard(self) -> dict[str, Any]:
        return standardization_registry().get(self.dataset_name, {})

    @cached_property
    def step_features(self) -> dict[str, Any]:
        return _flatten(self.builder.info.features["steps"].feature)

    def _is_rgb(self, feature: Any) -> bool:
        import tensorflow_datasets as tfds

        return isinstance(feature, tfds.features.Image) and tuple(feature.shape)[-1] == 3

    @cached_property
    def camera_keys(self) -> dict[str, str]:
        """observation image key -> camera name: the registry's names first, then every other RGB image."""
        named = self.standard.get("cameras", {})
        out = {}
        for key, feature in self.step_features.items():
            if key.startswith("observation/") and self._is_rgb(feature):
                native = key.removeprefix("observation/")
                out[key] = safe_name(named.get(native, native))
        return out

    @cached_property
    def language_ref(self) -> dict[str, Any]:
        ref = dict(self.standard.get("language", {}))
        if not ref and "language_instruction" in self.step_features:
            ref = {"step": "language_instruction"}
        if "observation" in ref:
            ref["key"] = f"observation/{ref['observation']}"
        elif "step" in ref:
            ref["key"] = ref["step"]
        return ref

    def _array_layout(self) -> dict[str, list[tuple[str, int, tuple[int, ...], str]]]:
        """Array name -> its parts as (feature key, width, per-step shape, dtype), concatenated in order."""
        state_keys = [f"observation/{k}" for k in self.standard.get("state", {}).get("keys", [])]
        layout: dict[str, list[tuple[str, int, tuple[int, ...], str]]] = {}
        groups: dict[str, list[str]] = {}
        language_key = self.language_ref.get("key")
        for key, feature in self.step_features.items():
            if key in self.camera_keys or key in STEP_BOOKKEEPING or key == language_key:
                continue
            if np.dtype(feature.np_dtype) == object:  # text other than the instruction: kept in no array
                continue
            if key in state_keys:
                name = "state"
            elif key == "action" or key.startswith("action/"):
                name = "action"
            elif key.startswith("observation/"):
                name = f"obs_{safe_name(key.removeprefix('observation/'))}"
            else:
                name = safe_name(key.split("/")[0])
            groups.setdefault(name, []).append(key)
        order = {"state": state_keys, "action": [f"action/{k}" for k in self.standard.get("action_keys", [])]}
        for name, keys in groups.items():
            preferred = [k for k in order.get(name, []) if k in keys]
            keys = preferred + sorted(k for k in keys if k not in preferred)
            parts = []
            for key in keys:
                feature = self.step_features[key]
                shape = tuple(int(d) for d in feature.shape)
                dtype = np.dtype(feature.np_dtype).name
                if len(keys) > 1 or len(shape) > 1:
                    shape = (int(np.prod(shape)) if shape else 1,)
                parts.append((key, int(np.prod(shape)) if shape else 1, shape, dtype))
            layout[name] = parts
        return layout

    def _slices(self, name: str, parts: list[tuple[str, int, tuple[int, ...], str]]) -> tuple[Slice, ...]:
        explicit = {"state": self.standard.get("state", {}).get("slices"), "action": self.standard.get("action_slices")}
        if explicit.get(name):
            return tuple(Slice(*s) for s in explicit[name])
        if len(parts) < 2:
            return ()
        return laid_end_to_end([(key.split("/", 1)[-1], width) for key, width, _, _ in parts])

    @cached_property
    def arrays(self) -> dict[str, ArraySpec]:
        out = {}
        for name, parts in self._array_layout().items():
            dtype = np.result_type(*[p[3] for p in parts]).name
            shape = parts[0][2] if len(parts) == 1 else (sum(p[1] for p in parts),)
            out[name] = ArraySpec(dtype, shape, self._slices(name, parts))
        if "eef7" in self.standard:
            out["action_eef7"] = ArraySpec("float32", (7,), EEF7_SLICES,
                                           "canonical: eef delta xyz, eef delta rotation, gripper 1 open / 0 closed")
        return out

    def _fps(self) -> float:
        where = f"{self.directory}: {self.dataset_name}, which oxe_standardization.yaml gives no fps"
        return chosen_fps(self.options.fps, self.standard.get("fps"), DEFAULT_FPS, where, "this adapter's default")

    def describe(self) -> list[SourceSpec]:
        cameras = {}
        for key, camera in self.camera_keys.items():
            height, width, _ = self.step_features[key].shape
            cameras[camera] = CameraSpec(int(height), int(width), codec_for_frames(height, width).to_json(),
                                         f"RLDS {key}")
        return [SourceSpec(
            name=self.source_name, kind=self.standard.get("kind", "teleop"), format=self.format,
            embodiment=safe_name(self.standard.get("embodiment", self.dataset_name)).lower(),
            fps=self._fps(), cameras=cameras, arrays=self.arrays,
            uri=self.directory,
            description=f"RLDS {self.builder.info.full_name}" + ("" if self.standard else " (not in the registry)"),
        )]

    def default_name(self) -> str:
        return safe_name(self.dataset_name)

    def work_items(self) -> list[WorkItem]:
        items = []
        for split, info in sorted(self.builder.info.splits.items()):
            start = 0
            for path, length in zip(info.filepaths, info.shard_lengths, strict=True):
                items.append(WorkItem(key=f"{split}/{PurePosixPath(str(path)).name}", path=str(path),
                                      options={"split": split, "start": start, "stop": start + length}))
                start += length
        return items

    def read(self, item: WorkItem) -> Iterator[Episode]:
        import tensorflow as tf

        if not tf.io.gfile.exists(item.path):
            raise FileNotFoundError(f"{item.path}: listed in dataset_info.json but missing")
        spec = self.spec_of(self.source_name)
        split, start, stop = item.options["split"], item.options["start"], item.options["stop"]
        episodes = self.builder.as_dataset(split=f"{split}[{start}:{stop}]", shuffle_files=False)
        count = 0
        for position, episode in enumerate(episodes, start=start):
            steps = episode["steps"].batch(1 << 30).get_single_element()
            flat = {key: value.numpy() for key, value in _flatten(steps).items()}
            metadata = _flatten(episode.get("episode_metadata", {}))
            metadata = {key: json_value(value.numpy()) for key, value in metadata.items()}
            yield self._episode(spec, flat, metadata, f"{split}/{position:08d}", split)
            count += 1
        if count != stop - start:
            raise ValueError(f"{item.path}: read {count} episodes, dataset_info.json says {stop - start}")

    def _episode(self, spec: SourceSpec, steps: dict[str, np.ndarray], metadata: dict[str, Any], key: str,
                 split: str) -> Episode:
        num_steps = len(steps["action"] if "action" in steps else next(iter(steps.values())))
        frames = {camera: steps[k] for k, camera in self.camera_keys.items() if steps[k].any()}
        arrays = {}
        for name, parts in self._array_layout().items():
            values = [steps[k].reshape(num_steps, -1) if len(parts) > 1 else steps[k] for k, *_ in parts]
            array = np.concatenate(values, axis=1) if len(values) > 1 else values[0]
            arrays[name] = array.astype(spec.arrays[name].dtype, copy=False)
        if "eef7" in self.standard:
            arrays["action_eef7"] = self._eef7(arrays["action"], spec.arrays["action"])
        return Episode(
            source=spec.name, native_key=f"{self.dataset_name}/{key}", num_steps=num_steps, frames=frames,
            arrays=arrays, language=self._language(steps), split=safe_name(split),
            info={"episode_metadata": metadata, "dataset": self.builder.info.full_name},
        )

    def _eef7(self, action: np.ndarray, spec: ArraySpec) -> np.ndarray:
        rule = self.standard["eef7"]
        slices = {s.name: s for s in spec.slices}

        def part(ref: str) -> np.ndarray:
            name, start, stop = _parse_ref(ref)
            whole = slices[safe_name(name)]
            lo = whole.start + (start or 0)
            hi = whole.start + stop if stop is not None else whole.stop
            return action[:, lo:hi].astype(np.float64)

        rot = np.zeros((len(action), 3)) if rule["rot"] == "zeros" else part(rule["rot"])
        gripper = GRIPPER_RULES[rule["gripper_rule"]](part(rule["gripper"])[:, 0])
        return np.concatenate([part(rule["pos"]), rot, gripper[:, None]], axis=1).astype(np.float32)

    def _language(self, steps: dict[str, np.ndarray]) -> str | None:
        key = self.language_ref.get("key")
        if not key or key not in steps:
            return None
        if self.language_ref.get("decode") == "codepoints":
            texts = [_decode_codepoints(v) for v in steps[key]]
        else:
            texts = [v.decode() if isinstance(v, bytes) else str(v) for v in steps[key]]
        unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
        return "; ".join(unique) or None

