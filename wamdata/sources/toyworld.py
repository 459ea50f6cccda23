"""The toy world as a source: the input is a pipeline YAML (default: the packaged pipelines/demo.yaml)
naming sources, appearances, seeds and sizes; each work item is one episode seed."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wamdata.format.schema import ArraySpec, CameraSpec, Episode, Slice, SourceSpec
from wamdata.media.codec import codec_with
from wamdata.sources.base import SourceAdapter, WorkItem, register
from wamdata.toy import world as toyworld

TOYWORLD_FPS = 10.0


def load_config(path: str | Path | None) -> dict[str, Any]:
    """A toy-world pipeline config; None or "" reads the packaged pipelines/demo.yaml."""
    if path:
        return yaml.safe_load(Path(path).read_text())
    return yaml.safe_load(resources.files("wamdata").joinpath("resources", "pipelines", "demo.yaml").read_text())


@register
class ToyWorldSource(SourceAdapter):
    format = "toyworld"

    def __init__(self, input: str, config: dict[str, Any] | None = None, **options: Any) -> None:
        # A config given as a dict (the demo's, a test's) is an option like any other: it names the run.
        super().__init__(input, **({"config": config} if config is not None else {}), **options)
        self.config = config if config is not None else load_config(input)

    def default_name(self) -> str:
        return self.config["name"]

    def dataset_description(self) -> str | None:
        return self.config.get("description")

    def specs(self) -> list[SourceSpec]:
        config = self.config
        size = config["image_size"]
        codec = codec_with(config.get("video"))
        specs = []
        for name, source in config["sources"].items():
            arrays = {}
            if source["with_actions"]:
                arrays = {
                    "action": ArraySpec("float32", (toyworld.ACTION_DIM,),
                                        tuple(Slice(**s) for s in toyworld.ACTION_SLICES)),
                    "state": ArraySpec("float32", (toyworld.STATE_DIM,),
                                       tuple(Slice(**s) for s in toyworld.STATE_SLICES)),
                }
            specs.append(SourceSpec(
                name=name,
                kind=source["kind"],
                format=self.format,
                embodiment=source["embodiment"],
                fps=TOYWORLD_FPS,
                cameras={config["camera"]: CameraSpec(height=size, width=size, codec=codec.to_json())},
                arrays=arrays,
                description=f"toy world, {source['appearance']} appearance",
            ))
        return specs

    def work_items(self) -> list[WorkItem]:
        return [
            WorkItem(key=f"{name}/seed-{source['first_seed'] + index}", path=self.input,
                     options={"source": name, "index": index})
            for name, source in self.config["sources"].items()
            for index in range(source["episodes"])
        ]

    def read(self, item: WorkItem) -> Iterator[Episode]:
        config = self.config
        name, index = item.options["source"], item.options["index"]
        source = config["sources"][name]
        seed = source["first_seed"] + index
        noise = source.get("noise", config["noise"])
        ep = toyworld.generate_episode(
            seed, appearance=source["appearance"], image_size=config["image_size"],
            max_steps=config["max_steps"], noise=noise,
        )
        yield Episode(
            source=name,
            native_key=f"seed-{seed}",
            num_steps=len(ep.frames),
            frames={config["camera"]: ep.frames},
            arrays={"action": ep.actions, "state": ep.states} if source["with_actions"] else {},
            language=ep.language,
            split="val" if index % config["val_every"] == config["val_every"] - 1 else "train",
            info={"seed": seed, "appearance": ep.appearance, "success": ep.success, "noise": noise},
        )
