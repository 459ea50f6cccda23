"""Label side-cars: per-step arrays a labeler writes beside a dataset, without rewriting its shards.

Layout (schemas/v1/labels.schema.json)::

    DATASET/labels/<labeler-id>/<source>-shard-NNNNNN.tar   the side-car of one data shard: WebDataset members
                                                            <episode_id>.<name>.npy, one (rows, *shape) array per
                                                            labelled episode and name; row t is step t
    DATASET/labels/<labeler-id>/labeler.json                provenance: checkpoint, options, label specs,
                                                            episodes, every tar with its sha256

and the ``labels`` column of episodes.parquet lists, per episode, the labeler ids whose side-cars hold it.
Writers (``wamdata label apply``), readers (the stream) and ``wamdata validate`` all go through this module.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import pyarrow as pa

from wamdata.format.files import join_url, write_atomic
from wamdata.format.schema import SchemaError, validate_labeler_manifest
from wamdata.format.writer import write_episodes_table

LABELS_DIR = "labels"
LABELER_JSON = "labeler.json"


@dataclass(frozen=True)
class LabelMember:
    url: str
    offset: int
    size: int


def sidecar_url(root: str | os.PathLike, labeler: str) -> str:
    """Where a dataset's side-car ``labeler`` lies (a local path for a local dataset)."""
    return join_url(str(root), f"{LABELS_DIR}/{labeler}")


def tar_name(shard: str) -> str:
    """Side-car tar of a data shard: ``shards/<source>/shard-NNNNNN.tar`` -> ``<source>-shard-NNNNNN.tar``
    (the shard's stem alone repeats across sources)."""
    parts = PurePosixPath(shard).parts
    return "-".join(parts[1:] if parts[0] == "shards" else parts)


def scan_sidecar(root: str, labeler: str) -> dict[str, dict[str, LabelMember]]:
    """episode_id -> label name -> where its .npy lies, for every tar of ``root``'s side-car ``labeler``
    (tar headers only, no data)."""
    fs, path = fsspec.core.url_to_fs(sidecar_url(root, labeler))
    found: dict[str, dict[str, LabelMember]] = {}
    for tar_path in sorted(fs.glob(f"{path}/*.tar")):
        url = fs.unstrip_protocol(tar_path)
        with fs.open(tar_path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar.getmembers():
                if not info.isfile() or not info.name.endswith(".npy") or info.name.count(".") < 2:
                    raise SchemaError(f"{url}: member {info.name!r} is not <episode_id>.<name>.npy")
                episode_id, name = info.name[: -len(".npy")].split(".", 1)
                found.setdefault(episode_id, {})[name] = LabelMember(url, info.offset_data, info.size)
    return found


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A local side-car's labeler.json, validated; None if it has none yet."""
    path = folder / LABELER_JSON
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON: {e}") from None
    validate_labeler_manifest(manifest, str(path))
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    validate_labeler_manifest(manifest, str(folder / LABELER_JSON))
    write_atomic(folder / LABELER_JSON, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")


def record_labels(root: str | os.PathLike, episodes: pa.Table, labeler: str, episode_ids: set[str]) -> None:
    """Add ``labeler`` to the labels column of these episodes; episodes.parquet is rewritten atomically, and
    not at all when nothing changes."""
    ids = episodes.column("episode_id").to_pylist()
    current = episodes.column("labels").to_pylist()
    updated = [sorted({*labels, labeler}) if eid in episode_ids else labels
               for eid, labels in zip(ids, current, strict=True)]
    if updated == current:
        return
    index = episodes.schema.get_field_index("labels")
    field = episodes.schema.field(index)
    table = episodes.set_column(index, field, pa.array(updated, type=field.type))
    write_episodes_table(root, table)
