"""The quickstart: toy-world episodes -> shards -> stats -> validate, configured by pipelines/demo.yaml; then
the toy world written in native formats (LeRobot v2.1, robomimic HDF5, EPIC-KITCHENS) and ingested from them;
then a small latent action model trained on the demo's video, its labels applied, and their quality measured."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wamdata.cluster import RaySession
from wamdata.format.validate import Problem, validate
from wamdata.format.writer import DatasetSummary
from wamdata.ingest import ingest
from wamdata.labeling.apply import ApplyResult, LabelOptions, label_apply
from wamdata.labeling.config import LAM_TRAINING, LAMConfig, labeler_options
from wamdata.labeling.evaluate import evaluate_lam
from wamdata.labeling.lam import train_lam
from wamdata.labeling.windows import lam_windows
from wamdata.media.codec import codec_with
from wamdata.sources.toyworld import TOYWORLD_FPS, ToyWorldSource
from wamdata.toy import world as toyworld
from wamdata.toy.export import export_epic_kitchens, write_lerobot_v21, write_robomimic_hdf5
from wamdata.train.checkpoint import save_model


@dataclass
class DemoResult:
    summary: DatasetSummary
    problems: list[Problem]
    seconds: dict[str, float]


def run_demo(config: dict[str, Any], out: str | Path | None = None, progress: bool = True) -> DemoResult:
    """The configured toy world ingested (``toyworld`` format, the same Ray pipeline as ``wamdata ingest``), then
    validated."""
    root = Path(out or config["out"])
    started = time.perf_counter()
    with RaySession(None):
        summary = ingest("toyworld", "", root, adapter=ToyWorldSource("", config=config),
                         shard_bytes=config["shard_bytes"], progress=progress).summary
    written = time.perf_counter()
    problems = validate(root, progress=progress)
    return DemoResult(summary, problems, {"write": written - started, "validate": time.perf_counter() - written})


@dataclass
class NativeIngestResult:
    format: str
    input: Path
    summary: DatasetSummary
    quarantined: int
    problems: list[Problem]
    seconds: float


def write_native(format: str, native: dict[str, Any], config: dict[str, Any], folder: Path) -> Path:
    """Write the configured toy-world source in a native format under ``folder``; returns the ingest input."""
    source = config["sources"][native["source"]]
    world = {"image_size": config["image_size"], "max_steps": config["max_steps"],
             "noise": source.get("noise", config["noise"])}
    if format == "epic_kitchens":
        export_epic_kitchens(folder / "toy_human_epic", videos=native["videos"],
                             segments_per_video=native["segments_per_video"], first_seed=source["first_seed"],
                             fps=TOYWORLD_FPS, **world)
        return folder / "toy_human_epic"
    episodes = [toyworld.generate_episode(source["first_seed"] + i, appearance=source["appearance"], **world)
                for i in range(native["episodes"])]
    if format == "lerobot":
        return write_lerobot_v21(episodes, folder / "toy_robot_lerobot", TOYWORLD_FPS, codec_with(config.get("video")))
    if format == "robomimic":
        return write_robomimic_hdf5(episodes, folder / "toy_robot.hdf5", TOYWORLD_FPS)
    raise ValueError(f"pipelines config: no toy-world writer for native format {format!r}")


def run_native_ingest(config: dict[str, Any], out: str | Path | None = None,
                      progress: bool = True) -> list[NativeIngestResult]:
    """Write the toy world in the configured native formats beside the demo dataset and ingest each one."""
    native_formats = config.get("native_formats") or {}
    root = Path(out or config["out"])
    root = root.with_name(f"{root.name}_native")
    if root.exists():
        shutil.rmtree(root)
    results = []
    with RaySession(None):
        for format, native in native_formats.items():
            written = write_native(format, native, config, root / "input")
            started = time.perf_counter()
            # Video sources take the demo's codec (4:4:4 for the toy world's flat colours), as a user would.
            options = {"video": config.get("video")} if format == "epic_kitchens" else {}
            result = ingest(format, str(written), root / format, progress=progress, **options)
            problems = validate(root / format, progress=progress)
            results.append(NativeIngestResult(format, written, result.summary, len(result.quarantined), problems,
                                              time.perf_counter() - started))
    return results


@dataclass
class DemoLabeling:
    checkpoint: Path
    train_windows: int
    applied: ApplyResult
    quality: dict[str, Any]
    seconds: dict[str, float]


def run_demo_labeling(config: dict[str, Any], out: str | Path | None = None, progress: bool = True,
                      on_log: Callable[[dict[str, float]], None] | None = None) -> DemoLabeling | None:
    """Train the configured LAM on the demo dataset's train video (no actions used), label the dataset with it,
    and measure the labels on the held-out episodes that have true actions."""
    labeling = config.get("labeling")
    if not labeling:
        return None
    root = Path(out or config["out"])
    lam_config, training = labeler_options(LAMConfig(), LAM_TRAINING, labeling.get("lam", {}),
                                           "pipelines config: labeling.lam")
    started = time.perf_counter()
    windows, _ = lam_windows([str(root)], lam_config.gap_seconds, "train", lam_config.image_size, None,
                             sources=labeling["train_sources"], seed=training.seed)
    model = train_lam(lam_config, training, windows.frames, on_log=on_log)
    checkpoint = save_model(model, root.with_name(f"{root.name}_lam"))
    trained = time.perf_counter()
    applied = label_apply(root, checkpoint, options=LabelOptions(only_unlabeled=labeling["only_unlabeled"]),
                          progress=progress)
    labelled = time.perf_counter()
    quality = evaluate_lam(model, [str(root)], embodiment=labeling["probe_embodiment"])
    return DemoLabeling(checkpoint, len(windows), applied, quality,
                        {"train": trained - started, "apply": labelled - trained,
                         "eval": time.perf_counter() - labelled})
