"""Source adapters: one small file per native format, registered by name.

An adapter turns one input (a folder, a file, a URL) into work items and each work item into Episodes.
The ingest pipeline parallelizes over work items, so a work item is the unit of retry, of quarantine
and of resume: one file, or one episode of a multi-episode file. ``adapter_for("lerobot", path)`` imports
``wamdata.sources.lerobot`` and returns its registered adapter; nothing else needs to know the list.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar

from wamdata.schema import Episode, SourceSpec

_REGISTRY: dict[str, type[SourceAdapter]] = {}


class InputWarning(UserWarning):
    """The input's metadata disagrees with its files; the adapter ingests what is there and says so."""


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
    """Reads one native format. Subclasses set ``format`` and are decorated with ``@register``."""

    format: ClassVar[str]

    def __init__(self, input: str, **options: Any) -> None:
        self.input = input
        self.options = options

    def default_name(self) -> str:
        """The dataset name when none is given: the input's last path component, as [A-Za-z0-9_]."""
        return safe_name(PurePosixPath(str(self.input).rstrip("/")).name or self.format)

    @abstractmethod
    def specs(self) -> list[SourceSpec]:
        """The sources this input holds episodes of, with their feature specs (read from metadata)."""

    @abstractmethod
    def work_items(self) -> list[WorkItem]:
        """Everything to read, in a deterministic order."""

    @abstractmethod
    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        """The episodes of one work item; raises (ValueError, OSError, ...) with a reason on bad input.
        Parts of the item that are bad while the rest is good (one annotation row of a video) come out as
        ``Rejected`` in place of their episode."""


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


def available_formats() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def adapter_for(format: str, input: str, **options: Any) -> SourceAdapter:
    """The adapter registered under ``format`` (the module wamdata/sources/<format>.py), opened on input."""
    if format not in available_formats():
        raise ValueError(f"unknown source format {format!r}; available: {', '.join(available_formats())}")
    importlib.import_module(f"{__name__}.{format}")
    return _REGISTRY[format](input, **options)
