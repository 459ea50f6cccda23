"""The raw member bytes of an episode: one positioned read per episode from a shard file kept open.

Local shards are read in place; remote ones (any fsspec protocol but ``file``) come through the
ShardCache, which is told which shards the worker needs next so downloads run ahead of decoding. Without
a cache folder, a remote episode is read with one range request.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec

from wamdata.format.reader import Dataset
from wamdata.format.shards import member_span, read_members, slice_members
from wamdata.stream.cache import ShardCache


def is_local(url: str) -> bool:
    return fsspec.utils.get_protocol(url) in ("file", "local")


class EpisodeReader:
    def __init__(
        self,
        datasets: Sequence[Dataset],
        cache: ShardCache | None = None,
        prefetch_shards: int = 2,
        open_shards: int = 8,
    ) -> None:
        self.datasets = list(datasets)
        self.cache = cache
        self.prefetch_shards = prefetch_shards
        self.open_shards = open_shards
        # Rows stay in Arrow and are read one at a time: a Python copy of every episode's member list would
        # cost each worker ~1 KB per episode.
        self._locations = [d.episodes.select(["shard", "members"])
                           for d in self.datasets]
        self._sha = [dict(zip(d.episodes.column("shard").to_pylist(), d.episodes.column("shard_sha256").to_pylist(),
                              strict=True)) for d in self.datasets]
        self._files: OrderedDict[tuple[int, str], Any] = OrderedDict()
        self._plan: list[tuple[int, str]] = []
        self._plan_position: dict[tuple[int, str], int] = {}

    def plan(self, shards: Sequence[tuple[int, str]]) -> None:
        """The (dataset, shard) pairs this reader will read, in the order it first needs them: prefetching
        follows it."""
        self._plan = list(shards)
        self._plan_position = {key: position for position, key in enumerate(self._plan)}

    def members(self, dataset: int, row: int) -> dict[str, bytes]:
        """Member suffix (``meta.json``, ``action.npy``, ``front.mp4``, ...) -> bytes of one episode."""
        location = self._locations[dataset].slice(row, 1).to_pylist()[0]
        shard, members = location["shard"], location["members"]
        url = self.datasets[dataset].shard_url(shard)
        if is_local(url) or self.cache is not None:
            start, end = member_span(members)
            return slice_members(self._read(dataset, shard, start, end - start), start, members)
        return read_members(url, members)

    def _read(self, dataset: int, shard: str, offset: int, size: int) -> bytes:
        blob = os.pread(self._file(dataset, shard).fileno(), size, offset)
        if len(blob) != size:
            # A cached file cut short by a concurrent eviction + refetch race: reopen once.
            self._files.pop((dataset, shard)).close()
            blob = os.pread(self._file(dataset, shard).fileno(), size, offset)
        if len(blob) != size:
            raise OSError(f"{self.datasets[dataset].shard_url(shard)}: short read at {offset} (+{size}): "
                          f"got {len(blob)} bytes; the shard is truncated")
        return blob

    def _file(self, dataset: int, shard: str) -> Any:
        key = (dataset, shard)
        if key in self._files:
            self._files.move_to_end(key)
            return self._files[key]
        url = self.datasets[dataset].shard_url(shard)
        cache = self.cache
        if cache is None or is_local(url):
            handle = open(url.removeprefix("file://"), "rb")  # noqa: SIM115 - kept open, closed on eviction
        else:
            try:
                handle = open(self._cached(cache, dataset, shard, url), "rb")  # noqa: SIM115 - as above
            except FileNotFoundError:  # evicted by another worker between download and open
                handle = open(self._cached(cache, dataset, shard, url), "rb")  # noqa: SIM115 - as above
        self._files[key] = handle
        if len(self._files) > self.open_shards:
            self._files.popitem(last=False)[1].close()
        return handle

    def _cached(self, cache: ShardCache, dataset: int, shard: str, url: str) -> Path:
        """The shard's verified local copy; the next shards of the plan start downloading behind it."""
        path = cache.get(url, self._sha[dataset][shard])
        position = self._plan_position.get((dataset, shard))
        if position is not None:
            for d, ahead in self._plan[position + 1: position + 1 + self.prefetch_shards]:
                cache.prefetch(self.datasets[d].shard_url(ahead), self._sha[d][ahead])
        return path

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        if self.cache is not None:
            self.cache.close()
