"""Ego4D: full videos ``<video_uid>.mp4`` and the narration JSON, cut into narrated clips.

The narration file maps ``video_uid -> {narration_pass_1: {narrations: [{timestamp_sec, timestamp_frame,
narration_text, annotation_uid}]}, narration_pass_2: ...}``. Narrations are points in time, so a clip is
either a window around each narration (``clips: narrations``, the default: [t - before, t + after] with
``window_seconds: [before, after]``, clamped to the video) or a sliding window (``clips: windows``, with
the clip options' clip_seconds / stride_seconds) carrying every narration that falls inside it. Each video
is one work item, streamed once whatever its length.

Options: ``narrations`` (the JSON; default ``narration.json`` in the input folder or its ``annotations/``),
``videos`` (folder of ``<video_uid>.mp4``, searched recursively; default the input folder),
``narration_passes`` (default ``[narration_pass_1]``; pass 2 narrates the same videos again), the clip
options of ``wamdata.clips.ClipOptions``, ``source`` (default "ego4d"), ``camera`` (default "head");
``video``: codec fields for the stored clips (e.g. ``{pix_fmt: yuv444p}``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from wamdata.format.schema import CameraSpec, Episode, SourceSpec
from wamdata.media.codec import codec_with
from wamdata.media.decode import VideoDecodeError, iter_frames, probe_video
from wamdata.sources.base import Rejected, SourceAdapter, WorkItem, register
from wamdata.sources.clips import (
    Clip,
    ClipOptions,
    ClipRequest,
    clip_episodes,
    common_format,
    cut_clips,
    short_side_fit,
    sliding_windows,
)

DEFAULT_WINDOW_SECONDS = (1.0, 1.0)
CLIP_MODES = ("narrations", "windows")


@register
class Ego4DSource(SourceAdapter):
    format = "ego4d"

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.root = Path(input)
        self.clip_options = ClipOptions.from_options(options)
        self.mode = options.get("clips", "narrations")
        if self.mode not in CLIP_MODES:
            raise ValueError(f"ego4d: clips must be one of {CLIP_MODES}, got {self.mode!r}")
        self.window = tuple(options.get("window_seconds", DEFAULT_WINDOW_SECONDS))
        self.passes = list(options.get("narration_passes", ["narration_pass_1"]))
        self.source = options.get("source", "ego4d")
        self.camera = options.get("camera", "head")

    @cached_property
    def narrations(self) -> dict[str, Any]:
        candidates = [Path(self.options["narrations"])] if "narrations" in self.options else [
            self.root / "narration.json", self.root / "annotations" / "narration.json"
        ]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no Ego4D narration JSON at {' or '.join(map(str, candidates))}")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected an object of video_uid -> narration passes")
        return doc

    @cached_property
    def videos(self) -> dict[str, Path]:
        folder = Path(self.options.get("videos", self.root))
        return {p.stem: p for p in sorted(folder.rglob("*.mp4"))}

    def specs(self) -> list[SourceSpec]:
        formats = {}
        for uid in sorted(self.narrations):
            if uid in self.videos:
                try:
                    formats[uid] = probe_video(self.videos[uid])
                except (VideoDecodeError, OSError):
                    continue  # reading it quarantines it, with the reason
        fps, height, width = common_format(formats, self.clip_options)
        return [SourceSpec(
            name=self.source,
            kind="egocentric_video",
            format=self.format,
            embodiment="human",
            fps=fps,
            cameras={self.camera: CameraSpec(height, width, codec_with(self.options.get("video")).to_json())},
            uri=str(self.root),
            description=f"Ego4D head-mounted video, clips by {self.mode}",
        )]

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=uid, path=str(self.videos.get(uid, self.root / f"{uid}.mp4")))
                for uid in sorted(self.narrations)]

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        if not Path(item.path).is_file():
            folder = self.options.get("videos", self.root)
            raise FileNotFoundError(f"video {item.key}: no {item.key}.mp4 under {folder}")
        narrations: list[dict[str, Any]] = []
        for pass_name in self.passes:
            for i, narration in enumerate(self.narrations[item.key].get(pass_name, {}).get("narrations", [])):
                key = f"{pass_name}/{narration.get('annotation_uid', i)}"
                try:
                    time = float(narration["timestamp_sec"])
                    if not math.isfinite(time) or time < 0:
                        raise ValueError(f"timestamp_sec {narration['timestamp_sec']!r} is not a time in the video")
                    text = str(narration["narration_text"])
                except (KeyError, TypeError, ValueError) as exc:
                    yield Rejected(f"{item.key}#{key}", f"narration {key} of video {item.key}: {exc}")
                    continue
                narrations.append({"key": key, "time": time, "text": text, "pass": pass_name,
                                   "annotation_uid": narration.get("annotation_uid"),
                                   "timestamp_frame": narration.get("timestamp_frame")})
        narrations.sort(key=lambda n: n["time"])
        options = self.clip_options
        frames = iter_frames(item.path)
        fit = short_side_fit(options.short_side)
        if self.mode == "narrations":
            before, after = self.window
            requests = [
                ClipRequest(key=n["key"], start=max(0.0, n["time"] - before), stop=n["time"] + after,
                            language=n["text"], info={"narration": {k: v for k, v in n.items() if k != "key"}},
                            min_stop=n["time"])
                for n in narrations
            ]
            clips = cut_clips(frames, requests, options.fps, item.key, item.path, fit)
        else:
            clips = (
                _with_narrations(clip, narrations)
                for clip in cut_clips(frames, sliding_windows(options), options.fps, item.key, item.path, fit)
            )
        yield from clip_episodes(clips, self.source, self.camera, item.key)


def _with_narrations(clip: Clip | Rejected, narrations: list[dict[str, Any]]) -> Clip | Rejected:
    """A sliding-window clip with the narrations that fall inside it as its text (in time order)."""
    if isinstance(clip, Rejected):
        return clip
    inside = [n for n in narrations if clip.request.start <= n["time"] < clip.stop]
    request = replace(
        clip.request,
        language="\n".join(n["text"] for n in inside) or None,
        info={"narrations": [{k: v for k, v in n.items() if k != "key"} for n in inside]},
    )
    return replace(clip, request=request)
