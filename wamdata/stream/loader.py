"""The torch IterableDataset of training windows, and the DataLoader helper that counts what it yielded.

``WindowStream`` is what each rank iterates: it deals this rank's and this dataloader worker's batches
of the epoch order (partition.py) and builds each window (window.py). ``StreamLoader`` wraps a torch
DataLoader around it and keeps the resume state: every rank holds the same ``state_dict()`` (epoch and
positions consumed by all ranks), so any rank's copy resumes any world size.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wamdata.format.reader import Dataset
from wamdata.media.codec import VideoCodec
from wamdata.stream.cache import ShardCache
from wamdata.stream.index import WindowIndex, WindowSpec
from wamdata.stream.labels import SidecarLabels
from wamdata.stream.normalize import Normalizer
from wamdata.stream.order import epoch_order
from wamdata.stream.partition import num_batches, rank_batches, worker_batches
from wamdata.stream.reader import EpisodeReader, is_local
from wamdata.stream.resume import StreamState
from wamdata.stream.window import ParsedEpisode, WindowBuilder, WindowLayout

DEFAULT_CACHE_BYTES = 8 << 30


@dataclass(frozen=True)
class StreamConfig:
    """Everything that decides which windows a stream yields, in which order, and how they look."""

    urls: tuple[str, ...]
    batch_size: int
    window: WindowSpec = field(default_factory=WindowSpec)
    split: str | None = "train"
    cameras: tuple[str, ...] | None = None  # None: every camera of any source
    image_size: tuple[int, int] | None = None  # None: the cameras' stored size (must agree)
    image_dtype: str = "uint8"  # or "float32" in [0, 1]
    normalization: str | None = "bounds"  # "bounds" (q01/q99 -> [-1, 1]), "mean_std", or None
    action_dim: int | None = None  # None: the widest source
    state_dim: int | None = None
    labels: tuple[str, ...] = ()  # labeler ids whose side-cars to read
    seed: int = 0
    shuffle_window: int = 4096  # windows; 0 keeps the stored order
    tail: str = "pad"  # "pad" or "drop", see partition.py
    cache_dir: str | None = None  # remote shards are cached here; None reads them with range requests
    cache_bytes: int = DEFAULT_CACHE_BYTES
    prefetch_shards: int = 2
    cached_episodes: int = 64  # parsed episodes (encoded video, normalized arrays) kept per worker

    def __post_init__(self) -> None:
        urls = [self.urls] if isinstance(self.urls, str) else self.urls
        object.__setattr__(self, "urls", tuple(str(u) for u in urls))
        if self.image_dtype not in ("uint8", "float32"):
            raise ValueError(f"image_dtype must be uint8 or float32, got {self.image_dtype!r}")


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from torch.distributed if initialized, else from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class StreamError(RuntimeError):
    """A window that cannot be read; the message names the shard, the episode and the step."""


Codecs = dict[tuple[str, str], VideoCodec]  # (source, camera) -> codec


def _layout(config: StreamConfig, datasets: Sequence[Dataset]) -> tuple[WindowLayout, Codecs]:
    sources = {name: spec for d in datasets for name, spec in d.sources.items()}
    cameras = config.cameras or tuple(sorted({c for s in sources.values() for c in s.cameras}))
    sizes = {(s.cameras[c].height, s.cameras[c].width) for s in sources.values() for c in cameras if c in s.cameras}
    if config.image_size is None and len(sizes) > 1:
        raise ValueError(f"cameras {cameras} come in sizes {sorted(sizes)}: set image_size to resize them to one")
    if not sizes and config.image_size is None:
        raise ValueError(f"no source has cameras {cameras}")
    widths = {}
    for name in ("action", "state"):
        native = max((int(np.prod(s.arrays[name].shape)) for s in sources.values() if name in s.arrays), default=0)
        asked = config.action_dim if name == "action" else config.state_dim
        if asked is not None and asked < native:
            raise ValueError(f"{name}_dim {asked} is narrower than the widest source's {name} ({native})")
        widths[name] = native if asked is None else asked
    layout = WindowLayout(
        spec=config.window, cameras=tuple(cameras), image_size=tuple(config.image_size or next(iter(sizes))),
        image_dtype=config.image_dtype, action_dim=widths["action"], state_dim=widths["state"],
        sources=tuple(sorted(sources)), embodiments=tuple(sorted({s.embodiment for s in sources.values()})),
    )
    codecs = {(name, c): VideoCodec.from_json(s.cameras[c].codec) for name, s in sources.items() for c in s.cameras}
    return layout, codecs


class WindowStream(IterableDataset):
    """Training windows of one or more datasets for one rank; see the package docstring."""

    def __init__(self, config: StreamConfig, rank: int | None = None, world_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        default_rank, default_world = distributed_rank()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.datasets = [Dataset.open(url) for url in config.urls]
        self.index = WindowIndex(self.datasets, config.window, config.split)
        self.layout, self.codecs = _layout(config, self.datasets)
        self.normalizer = (
            Normalizer([d.info["stats"] for d in self.datasets], config.normalization, ("action", "state"))
            if config.normalization else None
        )
        self.state = StreamState()

    @property
    def global_batch_size(self) -> int:
        return self.world_size * self.config.batch_size

    def fingerprint(self) -> dict[str, Any]:
        """What a saved state must agree on to resume: the windows and their order (not the world size)."""
        digest = hashlib.sha256()
        for d in self.datasets:
            digest.update("\0".join(d.episodes.column("episode_id").to_pylist()).encode())
        c = self.config
        return {"windows": len(self.index), "episodes_sha256": digest.hexdigest(), "seed": c.seed,
                "shuffle_window": c.shuffle_window, "window": asdict(c.window), "split": c.split}

    def num_batches(self) -> int:
        """Batches this rank yields from the current state to the end of the epoch."""
        return num_batches(len(self.index), self.state.consumed, self.world_size, self.config.batch_size,
                           self.config.tail)

    def assigned_windows(self, worker: int = 0, num_workers: int = 1) -> np.ndarray:
        """Window ids this rank's worker yields, (batches, batch_size), from the current state."""
        order = epoch_order(self.index.shard_sizes, self.config.seed, self.state.epoch, self.config.shuffle_window)
        batches = rank_batches(len(order), self.state.consumed, self.world_size, self.rank, self.config.batch_size,
                               self.config.tail)
        return order[worker_batches(batches, worker, num_workers)]

    def _reader(self) -> EpisodeReader:
        remote = not all(is_local(d.url) for d in self.datasets)
        cache = None
        if remote and self.config.cache_dir is not None:
            cache = ShardCache(self.config.cache_dir, self.config.cache_bytes)
        return EpisodeReader(self.datasets, cache, self.config.prefetch_shards)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        windows = self.assigned_windows(worker, num_workers).reshape(-1)
        episodes, anchors = self.index.locate(windows)
        dataset_of, row_of = self.index.dataset_of[episodes], self.index.row_of[episodes]
        reader = self._reader()
        builder = WindowBuilder(self.layout, self.codecs, self.normalizer,
                                [SidecarLabels(self.datasets, labeler) for labeler in self.config.labels])
        shards = self.index.shard_of_episode(episodes)
        _, first_use = np.unique(shards, return_index=True)
        reader.plan([self.index.shards[s] for s in shards[np.sort(first_use)].tolist()])
        parsed: OrderedDict[tuple[int, int], ParsedEpisode] = OrderedDict()
        # A worker builds one batch at a time: each video is opened and decoded once for all the windows of
        # the batch that need it, and the batch's frames are all the decoded frames the worker holds. A group
        # larger than the batch would starve the DataLoader, which asks each worker for only prefetch_factor
        # batches ahead: the worker would sit on finished windows while the other one works.
        size = self.config.batch_size
        try:
            for first in range(0, len(windows), size):
                # Python lists for one batch only: the worker's share of the epoch stays in numpy arrays.
                group = list(zip(*(a[first: first + size].tolist() for a in (windows, anchors, dataset_of, row_of)),
                                 strict=True))
                try:
                    episodes = [self._parsed(parsed, reader, builder, d, row) for _, _, d, row in group]
                    samples = builder.build_group(
                        [(e, anchor, window) for e, (window, anchor, _, _) in zip(episodes, group, strict=True)])
                except (OSError, ValueError, KeyError) as e:
                    raise StreamError(f"{self._where(group, e)}: {type(e).__name__}: {e}") from e
                yield from samples
        finally:
            reader.close()

    def _parsed(self, parsed: OrderedDict, reader: EpisodeReader, builder: WindowBuilder, d: int, row: int
                ) -> ParsedEpisode:
        key = (d, row)
        if key in parsed:
            parsed.move_to_end(key)
        else:
            parsed[key] = builder.parse(reader.members(d, row), d)
            if len(parsed) > self.config.cached_episodes:
                parsed.popitem(last=False)
        return parsed[key]

    def _where(self, group: list[tuple[int, int, int, int]], error: Exception) -> str:
        """The shard(s) and episode(s) of a group that failed, for the error message."""
        rows = {(d, row) for _, _, d, row in group}
        culprits = [(d, row) for d, row in sorted(rows) if str(self.datasets[d].row(row)["episode_id"]) in str(error)]
        names = []
        for d, row in culprits or sorted(rows):
            episode = self.datasets[d].row(row)
            names.append(f"{self.datasets[d].shard_url(episode['shard'])} (episode {episode['episode_id']})")
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _one_thread_per_worker(_: int) -> None:
    # Each dataloader worker decodes on one core; more threads per worker would oversubscribe the cores.
    torch.set_num_threads(1)


def default_num_workers() -> int:
    """One dataloader worker per core this rank may use (cores split over the ranks of this node)."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
               // local_world)


class StreamLoader:
    """A DataLoader over a WindowStream that knows where it stands: ``state_dict()`` / ``load_state_dict()``.

    Iterating yields the rest of the current epoch; when an epoch is exhausted the state moves to the next.
    """

    def __init__(self, stream: WindowStream, num_workers: int | None = None, prefetch_factor: int = 2,
                 pin_memory: bool = False) -> None:
        self.stream = stream
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self._fingerprint: dict[str, Any] | None = None

    @property
    def state(self) -> StreamState:
        return self.stream.state

    def __len__(self) -> int:
        return self.stream.num_batches()

    def set_epoch(self, epoch: int) -> None:
        self.stream.state = StreamState(epoch, 0)

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state.to_dict(self._cached_fingerprint())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.state = StreamState.from_dict(state, self._cached_fingerprint())

    def _cached_fingerprint(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = self.stream.fingerprint()
        return self._fingerprint

    def __iter__(self) -> Iterator[dict[str, Any]]:
        start = self.stream.state
        loader = DataLoader(
            self.stream, batch_size=self.stream.config.batch_size, num_workers=self.num_workers,
            prefetch_factor=self.prefetch_factor if self.num_workers else None, pin_memory=self.pin_memory,
            worker_init_fn=_one_thread_per_worker if self.num_workers else None,
        )
        for batches, batch in enumerate(loader, start=1):
            self.stream.state = start.advanced(batches, self.stream.global_batch_size)
            yield batch
        self.stream.state = StreamState(start.epoch + 1, 0)
