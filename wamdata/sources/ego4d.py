"""Ego4D: full videos ``<video_uid>.mp4`` and the narration JSON, cut into narrated clips.

The narration file maps ``video_uid -> {narration_pass_1: {narrations: [{timestamp_sec, timestamp_frame,
narration_text, annotation_uid}]}, narration_pass_2: ...}``. Narrations are points in time, so a clip is
either a window around each narration (``clips: narrations``, the default: [t - before, t + after] with
``window_seconds: [before, after]``, clamped to the video) or a sliding window (``clips: windows``, with
the clip options' clip_seconds / stride_seconds) carrying every narration that falls inside it. Each video
is one work item, streamed once whatever its length.

Videos of several rates or sizes are resolved to one rate and frame size as ``wamdata.sources.clips`` says.

Options: ``narrations`` (the JSON; default ``narration.json`` in the input folder or its ``annotations/``),
``videos`` (folder of ``<video_uid>.mp4``, searched recursively; default the input folder),
``narration_passes`` (default ``[narration_pass_1]``; pass 2 narrates the same videos again), ``clips``,
``window_seconds``, ``clip_seconds`` (default 4), ``stride_seconds``, ``fps``, ``short_side``, ``fit``
("crop" or "pad"), ``aspect`` ("16:9"), ``video`` (codec fields of the stored clips, e.g.
``{pix_fmt: yuv444p}``), ``source`` (default "ego4d"), ``camera`` (default "head"), ``kind`` (default
"egocentric_video"), ``embodiment`` (default "human").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from wamdata.format.schema import Episode
from wamdata.media.decode import VideoInfo, iter_frames
from wamdata.sources.base import Rejected, WorkItem, register
from wamdata.sources.clips import (
    Clip,
    ClipRequest,
    SourceNaming,
    VideoClipSource,
    WindowOptions,
    probe_all,
    sliding_windows,
)


@dataclass(frozen=True)
class Ego4DOptions(WindowOptions, SourceNaming):
    source: str = "ego4d"
    camera: str = "head"
    clip_seconds: float = 4.0
    clips: Literal["narrations", "windows"] = "narrations"
    window_seconds: tuple[float, float] = (1.0, 1.0)
    narration_passes: tuple[str, ...] = ("narration_pass_1",)
    narrations: str | None = None
    videos: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.window_seconds) < 0:
            raise ValueError(f"option window_seconds must be two times >= 0, got {list(self.window_seconds)}")


@register
class Ego4DSource(VideoClipSource):
    format = "ego4d"
    Options = Ego4DOptions

    @cached_property
    def narrations(self) -> dict[str, Any]:
        candidates = [Path(self.options.narrations)] if self.options.narrations else [
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
    def video_folder(self) -> Path:
        return Path(self.options.videos or self.root)

    @cached_property
    def videos(self) -> dict[str, Path]:
        return {p.stem: p for p in sorted(self.video_folder.rglob("*.mp4"))}

    def video_formats(self) -> dict[str, VideoInfo | Exception]:
        present = {uid: self.videos[uid] for uid in sorted(self.narrations) if uid in self.videos}
        missing = {uid: FileNotFoundError(f"video {uid}: no {uid}.mp4 under {self.video_folder}")
                   for uid in self.narrations if uid not in self.videos}
        return {**probe_all(present), **missing}

    def description(self) -> str:
        return f"Ego4D head-mounted video, clips by {self.options.clips}"

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=uid, path=str(self.videos.get(uid, self.video_folder / f"{uid}.mp4")))
                for uid in sorted(self.narrations)]

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        self.format_of(item.key)  # a missing or unreadable video fails here, with the reason kept
        narrations: list[dict[str, Any]] = []
        for pass_name in self.options.narration_passes:
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
        frames = iter_frames(item.path)
        if self.options.clips == "narrations":
            before, after = self.options.window_seconds
            requests = [
                ClipRequest(key=n["key"], start=max(0.0, n["time"] - before), stop=n["time"] + after,
                            language=n["text"], info={"narration": {k: v for k, v in n.items() if k != "key"}},
                            min_stop=n["time"])
                for n in narrations
            ]
            clips = self.clips(frames, requests, item.key, item.path)
        else:
            windows = sliding_windows(self.options.clip_seconds, self.options.stride_seconds)
            clips = (_with_narrations(clip, narrations) for clip in self.clips(frames, windows, item.key, item.path))
        yield from self.episodes(clips, item.key)


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
