"""Schema v1: the on-disk contract every stage shares, and the in-memory Episode that adapters yield.

The JSON Schema and Arrow schema files in ``schemas/v1`` are the single truth; this module loads them,
validates against them and adds the checks JSON Schema cannot express (array shapes against the
source's feature spec, slices inside the array).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal, get_args

import jsonschema
import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
SourceKind = Literal["teleop", "human_demo", "egocentric_video", "sim", "generated"]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
DATASET_JSON = "dataset.json"
EPISODES_PARQUET = "episodes.parquet"
QUARANTINE_PARQUET = "quarantine.parquet"


class SchemaError(ValueError):
    """Data that does not follow the schema; the message names the file (or object) and the reason."""


@cache
def schema_file(name: str) -> dict[str, Any]:
    """A JSON (Schema) document of the packaged ``schemas/v1``."""
    text = resources.files("wamdata").joinpath("resources", "schemas", f"v{SCHEMA_VERSION}", name).read_text()
    return json.loads(text)


def _check_version(doc: dict[str, Any], where: str) -> None:
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise SchemaError(
            f"{where}: unknown schema version {version!r} (this wamdata reads {list(SUPPORTED_SCHEMA_VERSIONS)})"
        )


def _validate_json(doc: dict[str, Any], schema_name: str, where: str) -> None:
    _check_version(doc, where)
    validator = jsonschema.Draft202012Validator(schema_file(schema_name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        location = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise SchemaError(f"{where}: {location}: {error.message}")


def validate_dataset_info(info: dict[str, Any], where: str = "dataset.json") -> None:
    """Check a dataset.json document: version, JSON Schema, and slices inside their arrays."""
    _validate_json(info, "dataset.schema.json", where)
    for source_name, source in info["sources"].items():
        SourceSpec.from_json(source_name, source).check(where)


def validate_meta(meta: dict[str, Any], where: str = "meta.json") -> None:
    _validate_json(meta, "meta.schema.json", where)


def validate_labeler_manifest(manifest: dict[str, Any], where: str = "labeler.json") -> None:
    """Check a label side-car's ``labeler.json`` (schemas/v1/labels.schema.json)."""
    _validate_json(manifest, "labels.schema.json", where)


def _arrow_type(spec: str | dict[str, Any]) -> pa.DataType:
    if isinstance(spec, str):
        return pa.type_for_alias(spec)
    if "list" in spec:
        return pa.list_(_arrow_type(spec["list"]))
    if "struct" in spec:
        return pa.struct([_arrow_field(f) for f in spec["struct"]])
    raise ValueError(f"unknown Arrow type spec {spec!r}")


def _arrow_field(spec: dict[str, Any]) -> pa.Field:
    return pa.field(spec["name"], _arrow_type(spec["type"]), nullable=spec["nullable"])


@cache
def episodes_arrow_schema() -> pa.Schema:
    """The Arrow schema of episodes.parquet, built from schemas/v1/episodes.arrow.json."""
    return pa.schema([_arrow_field(f) for f in schema_file("episodes.arrow.json")["fields"]])


@cache
def quarantine_arrow_schema() -> pa.Schema:
    """The Arrow schema of quarantine.parquet, built from schemas/v1/quarantine.arrow.json."""
    return pa.schema([_arrow_field(f) for f in schema_file("quarantine.arrow.json")["fields"]])


@cache
def _optional_episode_columns() -> dict[str, Any]:
    """Columns added to episodes.parquet after v1 shipped: name -> the value files without them imply."""
    return {f["name"]: f["default"] for f in schema_file("episodes.arrow.json")["fields"] if f.get("optional")}


def with_default_columns(table: pa.Table) -> pa.Table:
    """``table`` with every optional column it lacks added with its default, so readers need not care which
    wamdata wrote the file."""
    expected = episodes_arrow_schema()
    for name, default in _optional_episode_columns().items():
        if name not in table.schema.names:
            table = table.append_column(expected.field(name), pa.array([default] * table.num_rows,
                                                                       type=expected.field(name).type))
    return table


def validate_episodes_table(table: pa.Table, where: str = "episodes.parquet") -> None:
    expected = episodes_arrow_schema()
    for expected_field in expected:
        if expected_field.name not in table.schema.names:
            if expected_field.name in _optional_episode_columns():
                continue
            raise SchemaError(f"{where}: missing column {expected_field.name!r}")
        actual = table.schema.field(expected_field.name)
        if not actual.type.equals(expected_field.type):
            raise SchemaError(
                f"{where}: column {expected_field.name!r} has type {actual.type}, expected {expected_field.type}"
            )
        if not expected_field.nullable and table.column(expected_field.name).null_count:
            raise SchemaError(f"{where}: column {expected_field.name!r} has nulls")
    extra = set(table.schema.names) - set(expected.names)
    if extra:
        raise SchemaError(f"{where}: unknown columns {sorted(extra)}")
    ids = table.column("episode_id")
    if len(ids.unique()) != len(ids):
        raise SchemaError(f"{where}: episode_id is not unique")


def episode_id_for(source: str, native_key: str) -> str:
    """A stable id from the source and the episode's native key, safe as a WebDataset key (no dots)."""
    digest = hashlib.sha256(f"{source}\0{native_key}".encode()).hexdigest()[:16]
    return f"{source}-{digest}"


@dataclass(frozen=True)
class Slice:
    name: str
    start: int
    stop: int
    unit: str | None = None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class ArraySpec:
    """A per-step array: each episode stores it as (num_steps, *shape)."""

    dtype: str
    shape: tuple[int, ...]
    slices: tuple[Slice, ...] = ()
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape)}
        if self.slices:
            out["slices"] = [s.to_json() for s in self.slices]
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ArraySpec:
        return cls(
            dtype=d["dtype"],
            shape=tuple(d["shape"]),
            slices=tuple(Slice(**s) for s in d.get("slices", ())),
            description=d.get("description"),
        )


@dataclass(frozen=True)
class CameraSpec:
    height: int
    width: int
    codec: dict[str, Any]
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class SourceSpec:
    """What every episode of one source carries: its dataset.json entry."""

    name: str
    kind: str
    format: str
    embodiment: str
    fps: float
    cameras: dict[str, CameraSpec] = field(default_factory=dict)
    arrays: dict[str, ArraySpec] = field(default_factory=dict)
    uri: str | None = None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "format": self.format,
            "embodiment": self.embodiment,
            "fps": self.fps,
            "cameras": {name: cam.to_json() for name, cam in sorted(self.cameras.items())},
            "arrays": {name: arr.to_json() for name, arr in sorted(self.arrays.items())},
        }
        if self.uri is not None:
            out["uri"] = self.uri
        if self.description is not None:
            out["description"] = self.description
        return out

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> SourceSpec:
        return cls(
            name=name,
            kind=d["kind"],
            format=d["format"],
            embodiment=d["embodiment"],
            fps=d["fps"],
            cameras={k: CameraSpec(**v) for k, v in d["cameras"].items()},
            arrays={k: ArraySpec.from_json(v) for k, v in d["arrays"].items()},
            uri=d.get("uri"),
            description=d.get("description"),
        )

    def check(self, where: str) -> None:
        """Checks JSON Schema cannot express: names, kinds, slices that fit their array."""
        if not NAME_PATTERN.match(self.name) or not NAME_PATTERN.match(self.embodiment):
            raise SchemaError(f"{where}: source {self.name!r} / embodiment {self.embodiment!r}: use [A-Za-z0-9_]")
        if self.kind not in SOURCE_KINDS:
            raise SchemaError(f"{where}: source {self.name!r}: kind {self.kind!r} is not one of {SOURCE_KINDS}")
        for array_name, spec in self.arrays.items():
            np.dtype(spec.dtype)
            width = spec.shape[-1] if spec.shape else 1
            for s in spec.slices:
                if not 0 <= s.start < s.stop <= width:
                    raise SchemaError(
                        f"{where}: source {self.name!r}: slice {s.name} [{s.start}:{s.stop}] lies outside "
                        f"array {array_name!r} of width {width}"
                    )


@dataclass
class Episode:
    """One episode (or clip) as an adapter yields it, before encoding.

    ``frames`` holds decoded RGB frames per camera, uint8 (num_steps, H, W, 3); ``arrays`` holds per-step
    arrays (num_steps, *shape) such as ``action`` and ``state``. Either may be empty: video-only episodes
    have no action, state/action-only episodes have no camera.
    """

    source: str
    native_key: str
    num_steps: int
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    language: str | None = None
    split: str = "train"
    action_label: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def episode_id(self) -> str:
        return episode_id_for(self.source, self.native_key)

    @property
    def has_actions(self) -> bool:
        return "action" in self.arrays

    def meta(self, spec: SourceSpec) -> dict[str, Any]:
        """The sample's meta.json document."""
        label = self.action_label or ("ground_truth" if self.has_actions else "none")
        return {
            "schema_version": SCHEMA_VERSION,
            "episode_id": self.episode_id,
            "source": self.source,
            "native_key": self.native_key,
            "source_kind": spec.kind,
            "embodiment": spec.embodiment,
            "num_steps": self.num_steps,
            "fps": spec.fps,
            "cameras": sorted(self.frames),
            "arrays": {
                name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in sorted(self.arrays.items())
            },
            "has_actions": self.has_actions,
            "action_label": label,
            "language": self.language,
            "split": self.split,
            "info": self.info,
        }

    def check(self, spec: SourceSpec) -> None:
        """Validation on write: every camera and array matches the source's feature spec."""
        where = f"episode {self.native_key!r} of source {self.source!r}"
        if self.source != spec.name:
            raise SchemaError(f"{where}: written under source {spec.name!r}")
        if self.num_steps < 1:
            raise SchemaError(f"{where}: num_steps is {self.num_steps}")
        for camera, frames in self.frames.items():
            if camera not in spec.cameras:
                raise SchemaError(f"{where}: camera {camera!r} is not declared (declared: {sorted(spec.cameras)})")
            cam = spec.cameras[camera]
            expected = (self.num_steps, cam.height, cam.width, 3)
            if frames.dtype != np.uint8 or frames.shape != expected:
                raise SchemaError(
                    f"{where}: camera {camera!r} has {frames.dtype} {frames.shape}, expected uint8 {expected}"
                )
        for name, array in self.arrays.items():
            if name not in spec.arrays:
                raise SchemaError(f"{where}: array {name!r} is not declared (declared: {sorted(spec.arrays)})")
            check_array(array, spec.arrays[name], self.num_steps, f"{where}: array {name!r}")
        validate_meta(self.meta(spec), where)


def check_array(array: np.ndarray, spec: ArraySpec, num_steps: int, where: str) -> None:
    expected = (num_steps, *spec.shape)
    if array.dtype != np.dtype(spec.dtype) or array.shape != expected:
        raise SchemaError(f"{where}: has {array.dtype} {array.shape}, expected {spec.dtype} {expected}")
