"""Label side-cars: per-step arrays a labeler wrote beside a dataset, without rewriting its shards.

Layout (the hook the labeling stage writes to)::

    DATASET/labels/<labeler-id>/*.tar    WebDataset tars: <episode_id>.<name>.npy, one (num_steps, *shape)
                                         array per labelled episode and name (e.g. latent_action)

At start the tar headers are scanned once (member offsets only, no data); a window then reads its
episode's label arrays with one range read each and cuts ``[t : t + action_horizon]`` from them.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec
import numpy as np

from wamdata.dataset import Dataset, join_url
from wamdata.schema import SchemaError
from wamdata.shards import load_npy


@dataclass(frozen=True)
class LabelMember:
    url: str
    offset: int
    size: int


def scan_sidecar(root: str, labeler: str) -> dict[str, dict[str, LabelMember]]:
    """episode_id -> label name -> where its .npy lies, for every tar under ``root/labels/<labeler>/``."""
    folder = join_url(root, f"labels/{labeler}")
    fs, path = fsspec.core.url_to_fs(folder)
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


class SidecarLabels:
    """The ``labeler`` side-car of each dataset (datasets without one give masked-out labels)."""

    def __init__(self, datasets: Sequence[Dataset], labeler: str) -> None:
        self.labeler = labeler
        self.members = [scan_sidecar(d.url, labeler) for d in datasets]
        self.shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for by_episode in self.members:
            for by_name in by_episode.values():
                for name, member in by_name.items():
                    if name not in self.shapes:
                        array = self._load(member)
                        self.shapes[name] = (array.shape[1:], array.dtype)
        if not self.shapes:
            raise SchemaError(f"no label side-car {labeler!r} under {[join_url(d.url, 'labels') for d in datasets]}")

    @staticmethod
    def _load(member: LabelMember) -> np.ndarray:
        with fsspec.open(member.url, "rb") as f:
            f.seek(member.offset)
            return load_npy(f.read(member.size))

    def window(self, dataset: int, episode_id: str, anchor: int, length: int) -> dict[str, np.ndarray]:
        out = {}
        by_name = self.members[dataset].get(episode_id, {})
        for name, (shape, dtype) in self.shapes.items():
            values = np.zeros((length, *shape), dtype=dtype)
            mask = np.zeros(length, dtype=bool)
            if name in by_name:
                chunk = self._load(by_name[name])[anchor: anchor + length]
                values[: len(chunk)] = chunk
                mask[: len(chunk)] = True
            out[f"labels/{self.labeler}/{name}"] = values
            out[f"labels/{self.labeler}/{name}_mask"] = mask
        return out
