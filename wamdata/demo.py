"""The quickstart: toy-world episodes -> shards -> stats -> validate, configured by pipelines/demo.yaml; then
the toy robot written as a LeRobot v2.1 dataset and a robomimic HDF5 file and ingested from those."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from wamdata import toyworld
from wamdata.dataset import DatasetSummary, DatasetWriter, Problem, validate
from wamdata.ingest import RaySession, ingest
from wamdata.sources.toyworld import TOYWORLD_FPS, ToyWorldSource
from wamdata.toyworld_export import write_lerobot_v21, write_robomimic_hdf5
from wamdata.video import DEFAULT_CODEC, VideoCodec


@dataclass
class DemoResult:
    summary: DatasetSummary
    problems: list[Problem]
    seconds: dict[str, float]


def run_demo(config: dict[str, Any], out: str | Path | None = None, progress: bool = True) -> DemoResult:
    root = Path(out or config["out"])
    root.parent.mkdir(parents=True, exist_ok=True)
    source = ToyWorldSource("", config=config)
    items = source.work_items()
    started = time.perf_counter()
    with DatasetWriter(root, config["name"], source.specs(), config["shard_bytes"], config.get("description")) as w:
        for item in tqdm(items, desc="generate+encode+write", unit="episode", disable=not progress):
            for episode in source.read(item):
                w.write(episode)
        summary = w.close()
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


def run_native_ingest(config: dict[str, Any], out: str | Path | None = None,
                      progress: bool = True) -> list[NativeIngestResult]:
    """Write the toy robot in the configured native formats beside the demo dataset and ingest each one."""
    native = config.get("native_formats")
    if not native:
        return []
    root = Path(out or config["out"])
    root = root.with_name(f"{root.name}_native")
    if root.exists():
        shutil.rmtree(root)
    source = config["sources"][native["source"]]
    episodes = [
        toyworld.generate_episode(source["first_seed"] + i, appearance=source["appearance"],
                                  image_size=config["image_size"], max_steps=config["max_steps"], noise=config["noise"])
        for i in range(native["episodes"])
    ]
    codec = VideoCodec.from_json({**DEFAULT_CODEC.to_json(), **config.get("video", {})})
    writers = {
        "lerobot": lambda: write_lerobot_v21(episodes, root / "input" / "toy_robot_lerobot", TOYWORLD_FPS, codec),
        "robomimic": lambda: write_robomimic_hdf5(episodes, root / "input" / "toy_robot.hdf5", TOYWORLD_FPS),
    }
    results = []
    with RaySession(None):
        for format in native["formats"]:
            written = writers[format]()
            started = time.perf_counter()
            result = ingest(format, str(written), root / format, progress=progress)
            problems = validate(root / format, progress=progress)
            results.append(NativeIngestResult(format, written, result.summary, len(result.quarantined), problems,
                                              time.perf_counter() - started))
    return results
