"""The quickstart: toy-world episodes -> shards -> stats -> validate, configured by pipelines/demo.yaml."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from wamdata.dataset import DatasetSummary, DatasetWriter, Problem, validate
from wamdata.sources.toyworld import ToyWorldSource


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
