"""What every source adapter shares: the adapter contract, work items, rejections, the registry by name."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, TypeVar

import numpy as np

from wamdata.format.config import typed
from wamdata.format.schema import Episode, SchemaError, Slice, SourceSpec

_REGISTRY: dict[str, type[SourceAdapter]] = {}
K = TypeVar("K")
T = TypeVar("T")


class InputError(SchemaError):
    """An input that does not follow its format's layout (metadata missing a field, a file that cannot be
    parsed); the message names the file and the reason, and the command line prints it without a traceback."""


class InputWarning(UserWarning):
    """The input's metadata disagrees with its files; the adapter ingests what is there and says so."""


class DefaultChosen(UserWarning):
    """A setting the user left open that the adapter chose from the input (a frame rate, a frame size); the
    command line prints it, so the user sees what was chosen and which option changes it."""


@dataclass(frozen=True)
class WorkItem:
    """One unit of reading: ``key`` is stable and unique within the input (it names the item in
    quarantine.parquet and in resume bookkeeping); ``path`` is what to open; ``options`` says which part."""

    key: str
    path: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Rejected:
    """A part of a work item that could not be read (an annotation row, a clip of a video), yielded by
    ``read`` in place of its episode so the rest of the item still goes in: the pipeline records it in
    quarantine.parquet under ``key`` with ``reason`` and writes no episode for it. A whole item that
    cannot be read raises instead."""

    key: str
    reason: str


class SourceAdapter(ABC):
    """Reads one native format. Subclasses set ``format`` and ``Options`` (a frozen dataclass of the format's
    options with their defaults) and are decorated with ``@register``. ``self.options`` is an ``Options``: an
    unknown or mistyped option fails here, naming the option, the format and the known options."""

    format: ClassVar[str]
    Options: ClassVar[type]

    def __init__(self, input: str, **options: Any) -> None:
        self.input = input
        self.options = typed(self.Options, options, f"source format {self.format!r}")

    def options_record(self) -> dict[str, Any]:
        """The options as plain JSON values: what names an ingest run (a re-run with other options starts over)."""
        return json.loads(json.dumps(dataclasses.asdict(self.options), sort_keys=True, default=str))

    def relative(self, path: str | Path) -> str:
        """``path`` as named below the input (the file's name when the input is that file): what work item keys
        and native keys are made of, so they do not change when the input folder moves."""
        path, root = Path(path), Path(self.input)
        return path.name if path == root else str(path.relative_to(root))

    def work_items_of(self, files: Mapping[Path, T | Exception],
                      parts: Callable[[T], list[tuple[str, dict[str, Any]]]]) -> list[WorkItem]:
        """The work items of files described by ``described``: ``<file>:<part>`` for each (part, options) of
        ``parts(entry)``, and one ``<file>`` item for a file that could not be described (reading it raises why)."""
        items = []
        for path, entry in files.items():
            if isinstance(entry, Exception):
                items.append(WorkItem(key=self.relative(path), path=str(path)))
                continue
            items += [WorkItem(key=f"{self.relative(path)}:{part}", path=str(path), options=options)
                      for part, options in parts(entry)]
        return items

    def default_name(self) -> str:
        """The dataset name when none is given: the input's last path component, as [A-Za-z0-9_]."""
        return safe_name(PurePosixPath(str(self.input).rstrip("/")).name or self.format)

    def dataset_description(self) -> str | None:
        """dataset.json's description of a dataset made from this input alone (None: no description)."""
        return None

    @abstractmethod
    def describe(self) -> list[SourceSpec]:
        """The sources this input holds episodes of, with their feature specs (read from metadata); called
        once, through ``specs`` / ``spec_of``."""

    @cached_property
    def _specs(self) -> dict[str, SourceSpec]:
        return {spec.name: spec for spec in merge_specs(self.describe())}

    def specs(self) -> list[SourceSpec]:
        return list(self._specs.values())

    def spec_of(self, source: str) -> SourceSpec:
        """The spec of the source named ``source``; InputError when none of the input's files described it (their
        own work items say why)."""
        if source not in self._specs:
            raise InputError(f"{self.input}: no feature spec for source {source!r}: the files that would describe it "
                             "could not be read")
        return self._specs[source]

    @abstractmethod
    def work_items(self) -> list[WorkItem]:
        """Everything to read, in a deterministic order."""

    @abstractmethod
    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        """The episodes of one work item; raises (ValueError, OSError, ...) with a reason on bad input.
        Parts of the item that are bad while the rest is good (one annotation row of a video) come out as
        ``Rejected`` in place of their episode."""


def described(files: Mapping[K, Path], describe: Callable[[Path], T],
              keep: tuple[type[Exception], ...] = (InputError,)) -> dict[K, T | Exception]:
    """``describe(path)`` of each file, by its key, or in its place why it failed: a file that cannot be described
    is quarantined by its work item (which raises that error, see ``entry_of``), and the others are read. An error
    of a ``keep`` type, or one whose message names the file, is kept as it is; any other becomes an InputError
    naming the file."""
    out: dict[K, T | Exception] = {}
    for key, path in files.items():
        try:
            out[key] = describe(path)
        except Exception as e:  # noqa: BLE001 - whatever the file's reader raises, that one file is quarantined
            named = isinstance(e, keep) or str(path) in str(e)
            out[key] = e if named else InputError(f"{path}: cannot read: {type(e).__name__}: {e}")
    return out


def entry_of(described_files: Mapping[K, T | Exception], key: K) -> T:
    """The description of a file from ``described``; raises the error kept for one that has none."""
    entry = described_files[key]
    if isinstance(entry, Exception):
        raise entry
    return entry


def open_hdf5(path: str | Path) -> Any:
    """``path`` opened read-only (an ``h5py.File``, a context manager); InputError naming the file when HDF5 cannot
    open it, since h5py's own message does not name it."""
    import h5py  # only the HDF5 formats need it

    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"{path}: not a readable HDF5 file: {e}") from None


def require_positive(options: Any, *names: str) -> None:
    """ValueError naming the first of the fields ``names`` that is set but not above zero (a rate, a size);
    called by an ``Options.__post_init__``, so ``typed`` reports it as that option's error."""
    for name in names:
        value = getattr(options, name)
        if value is not None and not value > 0:
            raise ValueError(f"option {name} must be positive, got {value!r}")


def chosen_fps(option: float | None, recorded: float | None, default: float, where: str, default_is: str) -> float:
    """The rate of a source: the ``fps`` option when set, else the rate the input records, else ``default`` (which
    ``default_is``: whose default it is), said as a DefaultChosen warning naming ``where`` and the option."""
    if option is not None:
        return option
    if recorded is not None:
        return float(recorded)
    warnings.warn(f"{where}: no rate recorded; {default:g} Hz chosen ({default_is}); the option fps sets it",
                  DefaultChosen, stacklevel=3)
    return default


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders numbers by value: demo_2 before demo_10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


def json_value(value: Any) -> Any:
    """An HDF5 attribute, numpy scalar or array, or bytes as a plain JSON value; JSON text stays text."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value if value is None or isinstance(value, str | int | float | bool | list | dict) else str(value)


def find_files(root: str | Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """``root`` itself if it is a file, else every file below it whose suffix (any case) is one of ``suffixes``,
    in natural order; FileNotFoundError naming the folder and what was looked for if there is none."""
    root = Path(root)
    if root.is_file():
        return [root]
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file()),
                   key=lambda p: natural_key(str(p.relative_to(root))))
    if not files:
        raise FileNotFoundError(f"{root}: no {what} ({', '.join(suffixes)} files)")
    return files


def common_length(lengths: dict[str, int], where: str) -> int:
    """The one length all of an episode's streams share; ValueError listing each stream's length otherwise
    (streams of unequal length are never cut or padded to fit), or saying there is none."""
    if not lengths:
        raise ValueError(f"{where}: no per-step streams")
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{where}: streams have unequal lengths: "
                         + ", ".join(f"{name}={n}" for name, n in sorted(lengths.items())))
    return next(iter(lengths.values()))


def laid_end_to_end(parts: list[tuple[str, int]], unit: str | None = None) -> tuple[Slice, ...]:
    """Named slices of parts (name, width) concatenated in the order given, as one array's last axis."""
    slices, start = [], 0
    for name, width in parts:
        slices.append(Slice(safe_name(name), start, start + width, unit))
        start += width
    return tuple(slices)


def safe_name(text: str) -> str:
    """A source / dataset name from free text: runs of other characters become one underscore."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "unnamed"


def merge_specs(specs: list[SourceSpec]) -> list[SourceSpec]:
    """One spec per source name, in first-seen order: cameras and arrays are the union over the files that
    share the name (a recording without observations next to one with cameras)."""
    merged: dict[str, SourceSpec] = {}
    for spec in specs:
        first = merged.get(spec.name)
        merged[spec.name] = spec if first is None else dataclasses.replace(
            first, cameras={**spec.cameras, **first.cameras}, arrays={**spec.arrays, **first.arrays})
    return list(merged.values())


def register(cls: type[SourceAdapter]) -> type[SourceAdapter]:
    _REGISTRY[cls.format] = cls
    return cls


# Modules of wamdata/sources that hold shared helpers, not a format.
HELPER_MODULES = ("base", "clips")


def available_formats() -> list[str]:
    package = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(package)]) if m.name not in HELPER_MODULES)


def adapter_for(format: str, input: str, **options: Any) -> SourceAdapter:
    """The adapter registered under ``format`` (the module wamdata/sources/<format>.py), opened on input."""
    if format not in available_formats():
        raise ValueError(f"unknown source format {format!r}; available: {', '.join(available_formats())}")
    importlib.import_module(f"wamdata.sources.{format}")
    return _REGISTRY[format](input, **options)
