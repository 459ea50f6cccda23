"""The Ray Data actor of ``wamdata label apply``: it loads the checkpoint once, then labels whole data shards.

Per shard it reads each episode with one range read, decodes its camera once, resizes the frames with the one
resize to the checkpoint's ``image_size`` (exactly as the training windows were, through the stream), runs
the model in batches pooled across the shard's episodes, and writes ``labels/<labeler-id>/<tar>`` atomically.
Which episodes of a shard to label is the driver's choice (``wamdata.labeling.apply``), passed in each row.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import ray
import torch

from wamdata.format.files import write_atomic
from wamdata.format.labels import sidecar_url, tar_name
from wamdata.format.reader import Dataset
from wamdata.format.shards import iter_samples, npy_bytes, pack_tar
from wamdata.labeling.checkpoint import LabelingError, open_checkpoint
from wamdata.labeling.heads import empty_labels, make_head
from wamdata.labeling.lam import frames_to_tensor
from wamdata.media.frames import resize_frames


@dataclass(frozen=True)
class EpisodeRef:
    episode_id: str
    source: str
    shard: str
    camera: str
    num_steps: int
    fps: float


def shard_row(shard: str, episodes: list[EpisodeRef]) -> dict[str, str]:
    """One work item: a data shard and the episodes of it to label."""
    return {"shard": shard, "episodes": json.dumps([asdict(e) for e in episodes])}


def episode_frames(dataset: Dataset, episode: EpisodeRef, image_size: int) -> np.ndarray:
    """The frames a labeler sees of an episode: its camera decoded, then the one resize (wamdata.media.frames)
    to the checkpoint's ``image_size``, as the stream made the training windows; errors name the shard."""
    try:
        frames = dataset.read_episode(episode.episode_id).frames(episode.camera)
    except (OSError, ValueError) as e:
        raise ValueError(f"{dataset.shard_url(episode.shard)}: episode {episode.episode_id}, camera "
                         f"{episode.camera}: {e}") from e
    return resize_frames(frames, (image_size, image_size))


K = TypeVar("K")


def pooled_forward(inputs: Iterable[tuple[K, np.ndarray]], forward: Callable[[np.ndarray], list[np.ndarray]],
                   batch_size: int) -> Iterator[tuple[K, list[np.ndarray] | None]]:
    """``forward`` over the inputs of consecutive episodes in batches of ``batch_size`` rows (a short episode
    alone would leave an accelerator idle), its outputs cut back per episode, in order; None for an episode
    without inputs. Only the last batch is partial, so the batches, and the outputs, are a function of the
    inputs alone."""
    queue: deque[tuple[K, int]] = deque()
    pending: list[np.ndarray] = []
    pending_rows = 0
    ready: list[np.ndarray] | None = None

    def run(rows: int) -> None:
        nonlocal pending, pending_rows, ready
        x = np.concatenate(pending)
        parts = [forward(x[i: i + batch_size]) for i in range(0, rows, batch_size)]
        new = [np.concatenate(p) for p in zip(*parts, strict=True)]
        ready = new if ready is None else [np.concatenate(p) for p in zip(ready, new, strict=True)]
        pending, pending_rows = [x[rows:]], pending_rows - rows

    def hand_out() -> Iterator[tuple[K, list[np.ndarray] | None]]:
        nonlocal ready
        while queue and (queue[0][1] == 0 or (ready is not None and queue[0][1] <= len(ready[0]))):
            key, n = queue.popleft()
            if n == 0:
                yield key, None
                continue
            assert ready is not None
            yield key, [o[:n] for o in ready]
            ready = [o[n:] for o in ready]

    for key, x in inputs:
        queue.append((key, len(x)))
        if len(x):
            pending.append(x)
            pending_rows += len(x)
        if pending_rows >= batch_size:
            run(pending_rows - pending_rows % batch_size)
        yield from hand_out()
    if pending_rows:
        run(pending_rows)
    yield from hand_out()


def read_tar(path: Path) -> dict[str, bytes]:
    """Every member of a side-car tar: name -> bytes."""
    return {f"{key}.{suffix}": data for key, group in iter_samples(str(path)) for suffix, data in group.items()}


class ShardLabeler:
    """A Ray Data actor over rows of ``shard_row``: labels each row's episodes missing from its shard's tar."""

    def __init__(self, dataset_url: str, checkpoint: str, labeler: str, mc_samples: int, batch_size: int) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            # One thread per CPU Ray gave this actor: the actors of a node then share its cores without contention.
            torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.dataset = Dataset.open(dataset_url)
        found, model = open_checkpoint(checkpoint)
        if found.labeler != labeler:
            raise LabelingError(f"{checkpoint}: the checkpoint changed during the run ({labeler} -> {found.labeler})")
        self.head = make_head(model.to(self.device), self.dataset, mc_samples)
        self.image_size = model.config.image_size
        self.batch_size = batch_size
        self.folder = Path(sidecar_url(dataset_url, labeler))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = [self.label_shard(str(shard), [EpisodeRef(**e) for e in json.loads(str(episodes))])
                for shard, episodes in zip(batch["shard"], batch["episodes"], strict=True)]
        episodes, frames, errors = zip(*done, strict=True)
        return {"shard": batch["shard"], "episodes": np.array(episodes), "frames": np.array(frames),
                "error": np.array(errors)}

    def label_shard(self, shard: str, episodes: list[EpisodeRef]) -> tuple[int, int, str]:
        """Label the episodes missing from the shard's tar; (episodes, frames, error or "")."""
        path = self.folder / tar_name(shard)
        members = read_tar(path) if path.exists() else {}
        todo = [e for e in episodes if not all(f"{e.episode_id}.{name}.npy" in members for name in self.head.specs)]
        if not todo:  # a retried task whose first attempt finished the tar
            return 0, 0, ""
        torch.manual_seed(zlib.crc32(shard.encode()))  # dropout samples: a function of the shard, as the batches
        inputs = ((e, self.head.inputs(episode_frames(self.dataset, e, self.image_size), e.fps)) for e in todo)
        try:
            for episode, outputs in pooled_forward(inputs, self._forward, self.batch_size):
                labels = empty_labels(self.head) if outputs is None else self.head.labels(outputs)
                members.update({f"{episode.episode_id}.{name}.npy": npy_bytes(a) for name, a in labels.items()})
        except (OSError, ValueError) as e:  # a corrupt episode fails its shard; the driver reports it
            return 0, 0, f"{type(e).__name__}: {e}"
        write_atomic(path, pack_tar(sorted(members.items())))
        return len(todo), sum(e.num_steps for e in todo), ""

    @torch.no_grad()
    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        x = frames_to_tensor(np.ascontiguousarray(batch)).to(self.device)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.device.type == "cuda"):
            outputs = self.head.forward(x)
        return [(o.float() if o.is_floating_point() else o).cpu().numpy() for o in outputs]
