"""``wamdata label apply``: pseudo-labels from a trained LAM or IDM, written as side-car shards, on Ray Data.

    episodes.parquet -> one work item per data shard (its selected episodes)
      -> Ray Data map_batches over a pool of model actors (one GPU each, bf16 autocast, where the cluster has
         GPUs; else one CPU each): an actor loads the checkpoint once; per shard it reads each episode with one
         range read, decodes its camera once, resizes the frames as the trainer's stream did, runs the model
         in batches pooled across the shard's episodes, and writes ``labels/<labeler-id>/<tar>`` atomically
      -> the driver lists every tar with its sha256 in ``labels/<labeler-id>/labeler.json`` and records the
         labeler in the ``labels`` column of episodes.parquet

Video is never rewritten. The labeler id hashes the checkpoint (weights + config), so another checkpoint gets
another folder. A tar is the unit of resumption: written whole or not at all, and deterministic (same model,
frames and batches: same bytes), so a killed run re-run skips the finished tars and ends with the bytes of an
uninterrupted run; a run that finds a complete manifest covering its episodes writes nothing.

Labels, one ``<episode_id>.<name>.npy`` per episode; row t is step t, and rows stop where the model has no
input for the step (rather than a validity mask: the stream's ``labels/<id>/<name>_mask`` is then False past
the last row with no extra array):

    LAM  latent_code               (T - g, tokens) int32: codebook index of the change from frame t to t + g
         latent_embedding          (T - g, tokens, code_dim) float32: the encoder output before quantization
                                   (g = max(1, round(gap_seconds * fps)) at the episode's fps, as in training)
    IDM  pseudo_action             (T - 1, action_dim) float32, in the raw action units of the IDM's embodiment
         pseudo_action_confidence  (T - 1,) float32 in (0, 1]

IDM confidence: step t's action is predicted by every window s <= t < s + k (up to k overlapping chunks),
each run ``mc_samples`` times with dropout on (Monte Carlo dropout), all in normalized units (q01..q99 ->
[-1, 1]). ``pseudo_action`` is their mean, denormalized with the dataset's stats for the IDM's embodiment (the
stream's "bounds" normalization the IDM was trained with); the confidence is exp(-sqrt(mean over dims of
their variance)): 1 when every prediction agrees, 0.37 at a spread of half the q01..q99 range. With chunk 1
and mc_samples 1 each step has one prediction and the confidence is 1: no evidence either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
import ray
import torch
from safetensors import SafetensorError
from torch import nn

from wamdata import __version__
from wamdata.cluster import TASK_RETRIES, RaySession, ray_data_settings
from wamdata.format.files import write_atomic
from wamdata.format.labels import (
    LABELER_JSON,
    LABELS_DIR,
    read_manifest,
    record_labels,
    scan_sidecar,
    tar_name,
    write_manifest,
)
from wamdata.format.reader import Dataset
from wamdata.format.schema import SCHEMA_VERSION
from wamdata.format.shards import iter_samples, npy_bytes, pack_tar, sha256_of
from wamdata.labeling.checkpoint import CONFIG, WEIGHTS, labeler_id, load_checkpoint
from wamdata.labeling.idm import InverseDynamicsModel
from wamdata.labeling.lam import LatentActionModel, frames_to_tensor
from wamdata.labeling.windows import gap_for_fps
from wamdata.media.frames import resize_frames
from wamdata.stream.normalize import Normalizer

DEFAULT_BATCH_SIZE = 256
DEFAULT_MC_SAMPLES = 4
# Test hook: seconds each actor waits after writing a tar, so a test can kill a run between two tars.
THROTTLE_ENV = "WAMDATA_LABEL_THROTTLE_SECONDS"


class LabelingError(ValueError):
    """A checkpoint, option or dataset that cannot be labelled as asked; the message names the file."""


@dataclass(frozen=True)
class LabelOptions:
    camera: str | None = None       # None: the first (sorted) camera of each episode
    only_unlabeled: bool = False    # only episodes without true actions (has_actions false)
    mc_samples: int = DEFAULT_MC_SAMPLES
    batch_size: int = DEFAULT_BATCH_SIZE
    throttle_seconds: float = 0.0

    def manifest_options(self, model: str) -> dict[str, Any]:
        """The options that change label values: a later run into the same side-car must repeat them."""
        return {"camera": self.camera, "mc_samples": self.mc_samples if model == "idm" else 1}


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    labeler: str
    config: dict[str, Any]
    weights_sha256: str
    config_sha256: str


def open_checkpoint(folder: str | os.PathLike) -> tuple[Checkpoint, LatentActionModel | InverseDynamicsModel]:
    """The checkpoint's identity and its model; any problem is a LabelingError naming the file at fault."""
    folder = Path(folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise LabelingError(f"{folder / name}: missing; --model takes a checkpoint folder ({WEIGHTS} + {CONFIG}) "
                                "written by wamdata label train-lam / train-idm")
    try:
        config = json.loads((folder / CONFIG).read_text())
        model = load_checkpoint(folder)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise LabelingError(f"{folder / CONFIG}: not a LAM/IDM config this wamdata reads: {type(e).__name__}: {e}"
                            ) from None
    except (SafetensorError, RuntimeError) as e:
        raise LabelingError(f"{folder / WEIGHTS}: these weights do not load into the model {CONFIG} describes: "
                            f"{e}") from None
    digests = [hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in (WEIGHTS, CONFIG)]
    return Checkpoint(folder, labeler_id(folder), config, *digests), model


@dataclass(frozen=True)
class EpisodeRef:
    episode_id: str
    source: str
    shard: str
    camera: str
    num_steps: int
    fps: float


def episode_camera(options: LabelOptions, cameras: list[str]) -> str | None:
    """The camera labelled in an episode with these cameras, None if it has not got it."""
    camera = options.camera or (cameras[0] if cameras else None)
    return camera if camera in cameras else None


def select_episodes(dataset: Dataset, options: LabelOptions) -> tuple[list[EpisodeRef], int]:
    """The episodes to label, in episodes.parquet order, and how many were passed over for lack of the camera."""
    chosen, without_camera = [], 0
    columns = ["episode_id", "source", "shard", "cameras", "num_steps", "fps", "has_actions"]
    for row in dataset.episodes.select(columns).to_pylist():
        if options.only_unlabeled and row["has_actions"]:
            continue
        camera = episode_camera(options, row["cameras"])
        if camera is None:
            without_camera += 1
            continue
        chosen.append(EpisodeRef(row["episode_id"], row["source"], row["shard"], camera, row["num_steps"],
                                 row["fps"]))
    return chosen, without_camera


def by_shard(episodes: Iterable[EpisodeRef]) -> dict[str, list[EpisodeRef]]:
    grouped: dict[str, list[EpisodeRef]] = {}
    for episode in episodes:
        grouped.setdefault(episode.shard, []).append(episode)
    return grouped


# ---------------------------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class LabelSpec:
    dtype: str
    shape: tuple[int, ...]
    rows: str
    description: str


class LamHead:
    """LAM labels: the latent action of (frame t, frame t + gap) as its code and pre-quantization embedding."""

    def __init__(self, model: LatentActionModel) -> None:
        self.model = model.eval()
        c = model.config
        self.specs = {
            "latent_code": LabelSpec("int32", (c.tokens,), "num_steps - gap", "codebook index per token of the "
                                     "change from frame t to t + gap (gap = max(1, round(gap_seconds * fps)))"),
            "latent_embedding": LabelSpec("float32", (c.tokens, c.code_dim), "num_steps - gap",
                                          "encoder output z_e before quantization"),
        }

    def inputs(self, frames: np.ndarray, fps: float) -> np.ndarray:
        gap = gap_for_fps(self.model.config.gap_seconds, fps)
        return np.stack([frames[:-gap], frames[gap:]], axis=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        z_e = self.model.encode(self.model.resize(x[:, 0]), self.model.resize(x[:, 1]))
        return [self.model.quantizer(z_e)[1], z_e]

    def labels(self, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        codes, z_e = outputs
        return {"latent_code": codes.astype(np.int32), "latent_embedding": z_e.astype(np.float32)}


def pool_chunks(chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized action chunks (W windows, S samples, k, A), window s predicting steps s .. s+k-1, -> per step
    (W + k - 1 of them) the mean of every prediction of it and the confidence exp(-sqrt(mean_d var_d))."""
    windows, samples, k, width = chunks.shape
    steps = windows + k - 1 if windows else 0
    stacked = np.full((k, samples, steps, width), np.nan, dtype=np.float64)
    for j in range(k):  # chunk position j of window s is step s + j
        stacked[j, :, j: j + windows] = chunks[:, :, j].transpose(1, 0, 2)
    predictions = stacked.reshape(k * samples, steps, width)
    spread = np.sqrt(np.nanvar(predictions, axis=0).mean(axis=-1))
    return np.nanmean(predictions, axis=0), np.exp(-spread).astype(np.float32)


class IdmHead:
    """IDM labels: the ensemble mean of every (overlapping, dropout-sampled) prediction of a step's action in
    raw units, and their agreement as the confidence (module docstring)."""

    def __init__(self, model: InverseDynamicsModel, normalizer: Normalizer, mc_samples: int) -> None:
        self.model = model.eval()
        if mc_samples > 1:  # dropout alone in train mode: any normalization layer keeps its inference behaviour
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.train()
        self.normalizer = normalizer
        self.mc_samples = mc_samples
        c = model.config
        rows = "num_steps - 1"
        self.specs = {
            "pseudo_action": LabelSpec("float32", (c.action_dim,), rows, f"IDM action at step t (frame t -> t + 1) "
                                       f"in the raw units of embodiment {c.embodiment}, mean of every prediction"),
            "pseudo_action_confidence": LabelSpec("float32", (), rows, "exp(-sqrt(mean over dims of the variance "
                                                  "of the step's predictions in normalized units)), in (0, 1]"),
        }

    def inputs(self, frames: np.ndarray, fps: float) -> np.ndarray:
        k = self.model.config.chunk
        if len(frames) <= k:
            return np.zeros((0, k + 1, *frames.shape[1:]), dtype=frames.dtype)
        return np.lib.stride_tricks.sliding_window_view(frames, k + 1, axis=0).transpose(0, 4, 1, 2, 3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.stack([self.model(x) for _ in range(self.mc_samples)], dim=1)]

    def labels(self, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        mean, confidence = pool_chunks(outputs[0])
        action = self.normalizer.unnormalize(mean, self.model.config.embodiment, "action")
        return {"pseudo_action": action, "pseudo_action_confidence": confidence}


Head = LamHead | IdmHead


def make_head(model: LatentActionModel | InverseDynamicsModel, dataset: Dataset, options: LabelOptions) -> Head:
    if isinstance(model, LatentActionModel):
        return LamHead(model)
    return IdmHead(model, Normalizer([dataset.info["stats"]], "bounds", ("action",)), options.mc_samples)


def check_fits(checkpoint: Checkpoint, model: LatentActionModel | InverseDynamicsModel, dataset: Dataset,
               episodes: list[EpisodeRef]) -> None:
    """Refuse a checkpoint that would label these episodes wrongly, naming its config.json."""
    where = checkpoint.folder / CONFIG
    size = model.config.image_size
    for source, camera in sorted({(e.source, e.camera) for e in episodes}):
        spec = dataset.sources[source].cameras[camera]
        if size > min(spec.height, spec.width):
            raise LabelingError(f"{where}: image_size {size} is larger than camera {camera!r} of source {source!r} "
                                f"({spec.width}x{spec.height}): the model would label upsampled frames it was not "
                                f"trained on; use a checkpoint trained at {min(spec.height, spec.width)} px or less")
    if isinstance(model, InverseDynamicsModel):
        embodiment, width = model.config.embodiment, model.config.action_dim
        stats = dataset.info["stats"].get("by_embodiment", {})
        action = stats.get(embodiment, {}).get("action")
        if action is None:
            with_actions = sorted(e for e, arrays in stats.items() if "action" in arrays)
            raise LabelingError(f"{where}: the IDM predicts actions of embodiment {embodiment!r}, which has no action "
                                f"stats in {dataset.url}/dataset.json (embodiments with actions: {with_actions}): "
                                "its normalized predictions cannot be put back in raw units")
        if len(action["q01"]) != width:
            raise LabelingError(f"{where}: the IDM predicts {width} action dims of {embodiment!r}, this dataset's "
                                f"{embodiment!r} actions have {len(action['q01'])}")


# ---------------------------------------------------------------------------------------------- inference

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


def empty_labels(head: Head) -> dict[str, np.ndarray]:
    """Zero-row labels of an episode too short for one model input."""
    return {name: np.zeros((0, *spec.shape), dtype=spec.dtype) for name, spec in head.specs.items()}


def read_tar(path: Path) -> dict[str, bytes]:
    """Every member of a side-car tar: name -> bytes."""
    return {f"{key}.{suffix}": data for key, group in iter_samples(str(path)) for suffix, data in group.items()}


class ShardLabeler:
    """A Ray Data actor: loads the checkpoint once, then labels whole data shards into side-car tars."""

    def __init__(self, dataset_url: str, checkpoint: str, labeler: str, options: LabelOptions) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            # One thread per CPU Ray gave this actor: the actors of a node then share its cores without contention.
            torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.dataset = Dataset.open(dataset_url)
        found, model = open_checkpoint(checkpoint)
        if found.labeler != labeler:
            raise LabelingError(f"{checkpoint}: the checkpoint changed during the run ({labeler} -> {found.labeler})")
        self.head = make_head(model.to(self.device), self.dataset, options)
        self.image_size = (model.config.image_size, model.config.image_size)
        self.options = options
        self.selection = by_shard(select_episodes(self.dataset, options)[0])
        self.folder = Path(dataset_url) / LABELS_DIR / labeler

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        episodes, frames, errors = zip(*(self.label_shard(str(shard)) for shard in batch["shard"]), strict=True)
        return {"shard": batch["shard"], "episodes": np.array(episodes), "frames": np.array(frames),
                "error": np.array(errors)}

    def label_shard(self, shard: str) -> tuple[int, int, str]:
        """Label the shard's selected episodes missing from its tar; (episodes, frames, error or "")."""
        path = self.folder / tar_name(shard)
        members = read_tar(path) if path.exists() else {}
        todo = [e for e in self.selection[shard]
                if not all(f"{e.episode_id}.{name}.npy" in members for name in self.head.specs)]
        if not todo:  # a retried task whose first attempt finished the tar
            return 0, 0, ""
        torch.manual_seed(zlib.crc32(shard.encode()))  # dropout samples: a function of the shard, as the batches
        try:
            for episode, outputs in pooled_forward(self._inputs(todo), self._forward, self.options.batch_size):
                labels = empty_labels(self.head) if outputs is None else self.head.labels(outputs)
                members.update({f"{episode.episode_id}.{name}.npy": npy_bytes(a) for name, a in labels.items()})
        except (OSError, ValueError) as e:  # a corrupt episode fails its shard; the driver reports it
            return 0, 0, f"{type(e).__name__}: {e}"
        write_atomic(path, pack_tar(sorted(members.items())))
        time.sleep(self.options.throttle_seconds)
        return len(todo), sum(e.num_steps for e in todo), ""

    def _inputs(self, episodes: list[EpisodeRef]) -> Iterator[tuple[EpisodeRef, np.ndarray]]:
        for episode in episodes:
            try:
                frames = self.dataset.read_episode(episode.episode_id).frames(episode.camera)
            except (OSError, ValueError) as e:
                raise ValueError(f"{self.dataset.shard_url(episode.shard)}: episode {episode.episode_id}, camera "
                                 f"{episode.camera}: {e}") from e
            yield episode, self.head.inputs(resize_frames(frames, self.image_size), episode.fps)

    @torch.no_grad()
    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        x = frames_to_tensor(np.ascontiguousarray(batch)).to(self.device)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.device.type == "cuda"):
            outputs = self.head.forward(x)
        return [(o.float() if o.is_floating_point() else o).cpu().numpy() for o in outputs]


# ---------------------------------------------------------------------------------------------- the driver


@dataclass
class ApplyResult:
    labeler: str
    folder: Path
    selected: int            # episodes asked for
    without_camera: int      # episodes passed over for lack of the camera
    labelled: int = 0        # episodes this run computed labels for
    frames: int = 0          # frames it decoded and ran through the model
    tars_written: int = 0
    tars_done_before: int = 0  # tars an earlier (killed or narrower) run had finished
    seconds: float = 0.0
    nothing_to_do: bool = False


def _is_complete(manifest: dict[str, Any] | None, folder: Path, dataset: Dataset, selected: list[EpisodeRef]) -> bool:
    """A finished run already labelled every selected episode, and its tars and the labels column are there."""
    if manifest is None or not manifest["complete"]:
        return False
    if any(e.episode_id not in manifest["episodes"] for e in selected):
        return False
    if any(not (folder / t).is_file() or (folder / t).stat().st_size != entry["bytes"]
           for t, entry in manifest["tars"].items()):
        return False
    recorded = dict(zip(dataset.episodes.column("episode_id").to_pylist(),
                        dataset.episodes.column("labels").to_pylist(), strict=True))
    return all(manifest["labeler"] in recorded[e.episode_id] for e in selected)


def _manifest(checkpoint: Checkpoint, head: Head, options: dict[str, Any], precision: str,
              episodes: dict[str, dict[str, Any]], tars: dict[str, dict[str, Any]], complete: bool) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION, "labeler": checkpoint.labeler, "model": checkpoint.config["model"],
        "complete": complete, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wamdata_version": __version__,
        "checkpoint": {"path": str(checkpoint.folder), "config": checkpoint.config,
                       "weights_sha256": checkpoint.weights_sha256, "config_sha256": checkpoint.config_sha256},
        "options": options, "precision": precision,
        "labels": {name: {**asdict(spec), "shape": list(spec.shape)} for name, spec in head.specs.items()},
        "episodes": episodes, "tars": tars,
    }


def _finished_side_car(root: Path, labeler: str, dataset: Dataset, options: LabelOptions
                       ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(episodes, tars) of the manifest, from the tars on disk: every episode any run labelled, not only this
    run's selection."""
    rows = {r["episode_id"]: r for r in dataset.episodes.select(["episode_id", "cameras", "num_steps"]).to_pylist()}
    episodes, counts = {}, {}
    for episode_id, members in scan_sidecar(str(root), labeler).items():
        tar = PurePosixPath(next(iter(members.values())).url).name
        row = rows[episode_id]
        episodes[episode_id] = {"tar": tar, "camera": episode_camera(options, row["cameras"]),
                                "num_steps": row["num_steps"]}
        counts[tar] = counts.get(tar, 0) + 1
    folder = root / LABELS_DIR / labeler
    tars = {t: {"sha256": sha256_of(str(folder / t)), "bytes": (folder / t).stat().st_size, "episodes": n}
            for t, n in sorted(counts.items())}
    return episodes, tars


def run_actors(root: Path, checkpoint: Checkpoint, options: LabelOptions, shards: list[str], gpus: int,
               concurrency: int | None, progress: bool) -> list[dict[str, Any]]:
    """The Ray Data pass: one row per shard, through a fixed pool of model actors."""
    size = concurrency or gpus or int(ray.cluster_resources().get("CPU", 1))
    with ray_data_settings(progress):
        rows = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
        with warnings.catch_warnings():
            # As in ingest: Ray's default restarts an actor that keeps dying (a shard that crashes its decoder)
            # forever; the named options to bound it are deprecated without a replacement yet.
            warnings.simplefilter("ignore", DeprecationWarning)
            labelled = rows.map_batches(
                ShardLabeler, batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, min(size, len(shards)))),
                fn_constructor_kwargs={"dataset_url": str(root), "checkpoint": str(checkpoint.folder),
                                       "labeler": checkpoint.labeler, "options": options},
                num_cpus=1, num_gpus=1 if gpus else None, max_restarts=TASK_RETRIES, max_task_retries=TASK_RETRIES,
            )
        return labelled.take_all()


def label_apply(dataset: str | os.PathLike, checkpoint: str | os.PathLike, *, options: LabelOptions | None = None,
                address: str | None = None, concurrency: int | None = None, progress: bool = True) -> ApplyResult:
    """Label ``dataset``'s episodes with the LAM or IDM checkpoint folder ``checkpoint`` (see the module doc).

    ``address`` joins a Ray cluster (default: an embedded local Ray); the dataset folder must be on a file
    system every node sees. ``concurrency`` is the number of model actors (default: one per GPU, else per CPU).
    """
    started = time.perf_counter()
    options = options or LabelOptions()
    if "://" in str(dataset):
        raise LabelingError(f"{dataset}: label apply writes side-cars into the dataset folder: give a local path")
    root = Path(dataset)
    data = Dataset.open(root)
    found, model = open_checkpoint(checkpoint)
    selected, without_camera = select_episodes(data, options)
    if not selected:
        raise LabelingError(f"{root}: no episode to label (camera {options.camera or 'any'}"
                            f"{', without actions' if options.only_unlabeled else ''})")
    check_fits(found, model, data, selected)
    head = make_head(model, data, options)
    folder = root / LABELS_DIR / found.labeler
    manifest = read_manifest(folder)
    values = options.manifest_options(found.config["model"])
    if manifest is not None and manifest["options"] != values:
        raise LabelingError(f"{folder / LABELER_JSON}: written with options {manifest['options']}, this run asks for "
                            f"{values}; one side-car holds labels made one way (remove the folder to relabel)")
    result = ApplyResult(found.labeler, folder, selected=len(selected), without_camera=without_camera)
    if _is_complete(manifest, folder, data, selected):
        result.nothing_to_do, result.seconds = True, time.perf_counter() - started
        return result
    done = scan_sidecar(str(root), found.labeler)  # tar headers only
    shards = by_shard(selected)
    pending = [shard for shard, episodes in shards.items()
               if any(not head.specs.keys() <= done.get(e.episode_id, {}).keys() for e in episodes)]
    result.tars_done_before = len(shards) - len(pending)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.partial"):  # a killed writer's temporary file; its tar is redone
        stale.unlink()
    previous = (manifest or {}).get("episodes", {}), (manifest or {}).get("tars", {})
    with RaySession(address):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        precision = "bfloat16" if gpus else "float32"
        if manifest is not None and pending and manifest["precision"] != precision:
            raise LabelingError(f"{folder / LABELER_JSON}: labelled in {manifest['precision']}, this cluster would "
                                f"label in {precision}; finish on the same kind of machine (or remove the folder)")
        write_manifest(folder, _manifest(found, head, values, precision, *previous, complete=False))
        rows = run_actors(root, found, options, pending, gpus, concurrency, progress) if pending else []
    errors = [f"{tar_name(r['shard'])}: {r['error']}" for r in rows if r["error"]]
    if errors:
        raise LabelingError(f"{len(errors)} shard(s) could not be labelled (the others are kept; fix and re-run): "
                            + "; ".join(errors))
    result.labelled, result.frames = sum(int(r["episodes"]) for r in rows), sum(int(r["frames"]) for r in rows)
    result.tars_written = sum(1 for r in rows if int(r["episodes"]))
    episodes, tars = _finished_side_car(root, found.labeler, data, options)
    missing = sorted(e.episode_id for e in selected if e.episode_id not in episodes)
    if missing:
        raise LabelingError(f"{folder}: no labels for {len(missing)} episode(s) after the run, e.g. {missing[:3]}")
    record_labels(root, data.episodes, found.labeler, set(episodes))
    write_manifest(folder, _manifest(found, head, values, precision, episodes, tars, complete=True))
    result.seconds = time.perf_counter() - started
    return result
