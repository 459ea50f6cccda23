"""Label side-cars (``wamdata.format.labels``) cut to a window.

At start the tar headers are scanned once (member offsets only, no data); a window then reads its
episode's label arrays with one range read each and cuts ``[t : t + action_horizon]`` from them.
"""

from __future__ import annotations

from collections.abc import Sequence

import fsspec
import numpy as np

from wamdata.format.files import join_url
from wamdata.format.labels import LABELS_DIR, LabelMember, scan_sidecar
from wamdata.format.reader import Dataset
from wamdata.format.schema import SchemaError
from wamdata.format.shards import load_npy


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
            raise SchemaError(f"no label side-car {labeler!r} under {[join_url(d.url, LABELS_DIR) for d in datasets]}")

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
