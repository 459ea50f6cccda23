"""The toy world as a source: the input is a pipeline YAML (default: the packaged pipelines/demo.yaml)
naming sources, appearances, seeds and sizes; each work item is one episode seed.

Options: ``config``, the pipeline config as a mapping, in place of the input file (the demo's, a test's).
The config's other keys (``out``, ``native_formats``, ``labeling``, ...) belong to the demo and are not read here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from wamdata.format.config import typed
from wamdata.format.schema import ArraySpec, CameraSpec, Episode, Slice, SourceKind, SourceSpec
from wamdata.media.codec import codec_with
from wamdata.sources.base import InputError, SourceAdapter, WorkItem, register, require_positive
from wamdata.toy import world as toyworld

TOYWORLD_FPS = 10.0


def load_config(path: str | Path | None) -> dict[str, Any]:
    """A toy-world pipeline config; None or "" reads the packaged pipelines/demo.yaml."""
    if not path:
        return yaml.safe_load(resources.files("wamdata").joinpath("resources", "pipelines", "demo.yaml").read_text())
    try:
        config = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a toy-world config (a mapping of name, sources, image_size, ...)")
    return config


@dataclass(frozen=True)
class ToySource:
    """One source of the toy world: ``episodes`` seeds from ``first_seed``, rendered with ``appearance``."""

    kind: SourceKind
    embodiment: str
    appearance: Literal[toyworld.APPEARANCES]
    episodes: int
    first_seed: int
    with_actions: bool
    noise: float | None = None  # None: the world's noise


@dataclass(frozen=True)
class ToyWorld:
    """The keys of a pipeline config that the toy world is generated from."""

    name: str
    sources: dict[str, Any]
    image_size: int
    max_steps: int
    noise: float
    camera: str
    val_every: int
    description: str | None = None
    video: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        require_positive(self, "image_size", "max_steps", "val_every")

    @classmethod
    def of(cls, config: Mapping[str, Any], where: str) -> ToyWorld:
        """The toy world a config describes; ConfigError naming the key that is missing or of the wrong type."""
        own = {name: config[name] for name in (f.name for f in dataclasses.fields(cls)) if name in config}
        world = typed(cls, own, where, what="key")
        if not world.sources or not all(isinstance(source, Mapping) for source in world.sources.values()):
            raise InputError(f"{where}: sources must map each source's name to its keys (kind, episodes, ...)")
        sources = {name: typed(ToySource, source, f"{where}: sources.{name}", what="key")
                   for name, source in world.sources.items()}
        return dataclasses.replace(world, sources=sources)


@register
class ToyWorldSource(SourceAdapter):
    format = "toyworld"

    @dataclass(frozen=True)
    class Options:
        config: dict[str, Any] | None = None  # None: the input file's config

    def __init__(self, input: str, **options: Any) -> None:
        # A config given as a dict is an option like any other: it names the run (the ingest's run record).
        super().__init__(input, **options)
        if self.options.config is not None:
            self.world = ToyWorld.of(self.options.config, "toyworld option config")
        else:
            self.world = ToyWorld.of(load_config(input), str(input or "the packaged pipelines/demo.yaml"))

    def default_name(self) -> str:
        return self.world.name

    def dataset_description(self) -> str | None:
        return self.world.description

    def describe(self) -> list[SourceSpec]:
        world = self.world
        codec = codec_with(world.video)
        specs = []
        for name, source in world.sources.items():
            arrays = {}
            if source.with_actions:
                arrays = {
                    "action": ArraySpec("float32", (toyworld.ACTION_DIM,),
                                        tuple(Slice(**s) for s in toyworld.ACTION_SLICES)),
                    "state": ArraySpec("float32", (toyworld.STATE_DIM,),
                                       tuple(Slice(**s) for s in toyworld.STATE_SLICES)),
                }
            specs.append(SourceSpec(
                name=name,
                kind=source.kind,
                format=self.format,
                embodiment=source.embodiment,
                fps=TOYWORLD_FPS,
                cameras={world.camera: CameraSpec(height=world.image_size, width=world.image_size,
                                                  codec=codec.to_json())},
                arrays=arrays,
                description=f"toy world, {source.appearance} appearance",
            ))
        return specs

    def work_items(self) -> list[WorkItem]:
        return [
            WorkItem(key=f"{name}/seed-{source.first_seed + index}", path=self.input,
                     options={"source": name, "index": index})
            for name, source in self.world.sources.items()
            for index in range(source.episodes)
        ]

    def read(self, item: WorkItem) -> Iterator[Episode]:
        world = self.world
        name, index = item.options["source"], item.options["index"]
        source = world.sources[name]
        seed = source.first_seed + index
        noise = world.noise if source.noise is None else source.noise
        ep = toyworld.generate_episode(
            seed, appearance=source.appearance, image_size=world.image_size, max_steps=world.max_steps, noise=noise,
        )
        yield Episode(
            source=name,
            native_key=f"seed-{seed}",
            num_steps=len(ep.frames),
            frames={world.camera: ep.frames},
            arrays={"action": ep.actions, "state": ep.states} if source.with_actions else {},
            language=ep.language,
            split="val" if index % world.val_every == world.val_every - 1 else "train",
            info={"seed": seed, "appearance": ep.appearance, "success": ep.success, "noise": noise},
        )
