"""The quickstart: toy-world episodes -> shards -> stats -> validate, configured by pipelines/demo.yaml."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from wamdata import toyworld
from wamdata.dataset import DatasetSummary, DatasetWriter, Problem, validate
from wamdata.schema import ArraySpec, CameraSpec, Episode, Slice, SourceSpec
from wamdata.video import DEFAULT_CODEC, VideoCodec

TOYWORLD_FPS = 10.0


def default_config_text() -> str:
    return resources.files("wamdata").joinpath("pipelines", "demo.yaml").read_text()


def load_config(path: str | Path | None) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text() if path else default_config_text())


def toyworld_source_spec(name: str, source: dict[str, Any], config: dict[str, Any]) -> SourceSpec:
    size = config["image_size"]
    codec = VideoCodec.from_json({**DEFAULT_CODEC.to_json(), **config.get("video", {})})
    arrays = {}
    if source["with_actions"]:
        arrays = {
            "action": ArraySpec("float32", (2,), tuple(Slice(**s) for s in toyworld.ACTION_SLICES)),
            "state": ArraySpec("float32", (toyworld.STATE_DIM,), tuple(Slice(**s) for s in toyworld.STATE_SLICES)),
        }
    return SourceSpec(
        name=name,
        kind=source["kind"],
        format="toyworld",
        embodiment=source["embodiment"],
        fps=TOYWORLD_FPS,
        cameras={config["camera"]: CameraSpec(height=size, width=size, codec=codec.to_json())},
        arrays=arrays,
        description=f"toy world, {source['appearance']} appearance",
    )


def toyworld_episodes(name: str, source: dict[str, Any], config: dict[str, Any]) -> Iterator[Episode]:
    for index in range(source["episodes"]):
        seed = source["first_seed"] + index
        ep = toyworld.generate_episode(
            seed, appearance=source["appearance"], image_size=config["image_size"],
            max_steps=config["max_steps"], noise=config["noise"],
        )
        arrays = {"action": ep.actions, "state": ep.states} if source["with_actions"] else {}
        yield Episode(
            source=name,
            native_key=f"seed-{seed}",
            num_steps=len(ep.frames),
            frames={config["camera"]: ep.frames},
            arrays=arrays,
            language=ep.language,
            split="val" if index % config["val_every"] == config["val_every"] - 1 else "train",
            info={"seed": seed, "appearance": ep.appearance, "success": ep.success, "noise": config["noise"]},
        )


@dataclass
class DemoResult:
    summary: DatasetSummary
    problems: list[Problem]
    seconds: dict[str, float]


def run_demo(config: dict[str, Any], out: str | Path | None = None, progress: bool = True) -> DemoResult:
    root = Path(out or config["out"])
    root.parent.mkdir(parents=True, exist_ok=True)
    specs = [toyworld_source_spec(name, s, config) for name, s in config["sources"].items()]
    total = sum(s["episodes"] for s in config["sources"].values())
    started = time.perf_counter()
    with DatasetWriter(root, config["name"], specs, config["shard_bytes"], config.get("description")) as writer:
        bar = tqdm(total=total, desc="generate+encode+write", unit="episode", disable=not progress)
        for name, source in config["sources"].items():
            for episode in toyworld_episodes(name, source, config):
                writer.write(episode)
                bar.update(1)
        bar.close()
        summary = writer.close()
    written = time.perf_counter()
    problems = validate(root, progress=progress)
    return DemoResult(summary, problems, {"write": written - started, "validate": time.perf_counter() - written})
