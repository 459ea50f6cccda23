"""``wamdata label apply``: pseudo-labels from a trained LAM or IDM, written as side-car shards, on Ray Data.

This module is the driver:

    episodes.parquet -> the episodes to label, one work item per data shard (those of its episodes not yet done)
      -> Ray Data map_batches over a pool of model actors (one GPU each, bf16 autocast, where the cluster has
         GPUs; else one CPU each; ``wamdata.labeling.actor``): per shard, the episodes' frames through the one
         resize to the checkpoint's image_size (as in training), the model's head (``wamdata.labeling.heads``),
         ``labels/<labeler-id>/<tar>`` written atomically
      -> the driver lists every tar with its sha256 in ``labels/<labeler-id>/labeler.json`` and records the
         labeler in the ``labels`` column of episodes.parquet (side-car IO: ``wamdata.format.labels``)

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

import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import ray

from wamdata import __version__
from wamdata.cluster import TASK_RETRIES, RaySession, ray_data_settings
from wamdata.format.labels import (
    LABELER_JSON,
    read_manifest,
    record_labels,
    scan_sidecar,
    sidecar_url,
    tar_name,
    write_manifest,
)
from wamdata.format.reader import Dataset
from wamdata.format.schema import SCHEMA_VERSION
from wamdata.format.shards import sha256_of
from wamdata.labeling.actor import EpisodeRef, ShardLabeler, shard_row
from wamdata.labeling.checkpoint import Checkpoint, Labeler, LabelingError, open_checkpoint
from wamdata.labeling.heads import Head, make_head
from wamdata.labeling.idm import InverseDynamicsModel
from wamdata.train.checkpoint import CONFIG

DEFAULT_BATCH_SIZE = 256
DEFAULT_MC_SAMPLES = 4


@dataclass(frozen=True)
class LabelOptions:
    camera: str | None = None       # None: the first (sorted) camera of each episode
    only_unlabeled: bool = False    # only episodes without true actions (has_actions false)
    mc_samples: int = DEFAULT_MC_SAMPLES
    batch_size: int = DEFAULT_BATCH_SIZE

    def manifest_options(self, model: str) -> dict[str, Any]:
        """The options that change label values: a later run into the same side-car must repeat them."""
        return {"camera": self.camera, "mc_samples": self.mc_samples if model == "idm" else 1}


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


def check_fits(checkpoint: Checkpoint, model: Labeler, dataset: Dataset, episodes: list[EpisodeRef]) -> None:
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
    folder = Path(sidecar_url(root, labeler))
    tars = {t: {"sha256": sha256_of(str(folder / t)), "bytes": (folder / t).stat().st_size, "episodes": n}
            for t, n in sorted(counts.items())}
    return episodes, tars


def run_actors(root: Path, checkpoint: Checkpoint, options: LabelOptions, shards: dict[str, list[EpisodeRef]],
               gpus: int, concurrency: int | None, progress: bool) -> list[dict[str, Any]]:
    """The Ray Data pass: one row per shard (with its episodes to label), through a fixed pool of model actors."""
    size = concurrency or gpus or int(ray.cluster_resources().get("CPU", 1))
    with ray_data_settings(progress):
        rows = ray.data.from_items([shard_row(s, episodes) for s, episodes in shards.items()],
                                   override_num_blocks=len(shards))
        with warnings.catch_warnings():
            # As in ingest: Ray's default restarts an actor that keeps dying (a shard that crashes its decoder)
            # forever; the named options to bound it are deprecated without a replacement yet.
            warnings.simplefilter("ignore", DeprecationWarning)
            labelled = rows.map_batches(
                ShardLabeler, batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, min(size, len(shards)))),
                fn_constructor_kwargs={"dataset_url": str(root), "checkpoint": str(checkpoint.folder),
                                       "labeler": checkpoint.labeler, "mc_samples": options.mc_samples,
                                       "batch_size": options.batch_size},
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
    head = make_head(model, data, options.mc_samples)
    folder = Path(sidecar_url(root, found.labeler))
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
    pending = {shard: episodes for shard, episodes in shards.items()
               if any(not head.specs.keys() <= done.get(e.episode_id, {}).keys() for e in episodes)}
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
