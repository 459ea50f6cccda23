"""Any folder of videos (mp4, mkv, webm, avi, mov; searched recursively), no labels, cut into sliding
windows. Each video is one work item; its clips are its episodes.

Options: the clip options of ``wamdata.clips.ClipOptions`` (fps, short_side, clip_seconds,
stride_seconds), and ``source`` (name, default "videos"), ``kind`` (default "egocentric_video"),
``embodiment`` (default "human"), ``camera`` (default "rgb"); ``video``: codec fields for the stored
clips (e.g. ``{pix_fmt: yuv444p}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from wamdata.format.schema import CameraSpec, Episode, SourceSpec
from wamdata.media.codec import codec_with
from wamdata.media.decode import VideoDecodeError, iter_frames, probe_video
from wamdata.sources.base import Rejected, SourceAdapter, WorkItem, register
from wamdata.sources.clips import (
    ClipOptions,
    clip_episodes,
    common_format,
    cut_clips,
    probe,
    short_side_fit,
    sliding_windows,
)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@register
class VideoFolderSource(SourceAdapter):
    format = "video_folder"

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.clip_options = ClipOptions.from_options(options)
        self.root = Path(input)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{input}: not a folder of videos")

    @cached_property
    def videos(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())

    def specs(self) -> list[SourceSpec]:
        return [self.spec]

    @cached_property
    def spec(self) -> SourceSpec:
        # Videos that cannot be probed are left out of the format here; reading them quarantines them.
        formats = {}
        for path in self.videos:
            try:
                formats[str(path.relative_to(self.root))] = probe_video(path)
            except (VideoDecodeError, OSError):
                continue
        fps, height, width = common_format(formats, self.clip_options)
        return SourceSpec(
            name=self.options.get("source", "videos"),
            kind=self.options.get("kind", "egocentric_video"),
            format=self.format,
            embodiment=self.options.get("embodiment", "human"),
            fps=fps,
            cameras={self.options.get("camera", "rgb"): CameraSpec(
                height, width, codec_with(self.options.get("video")).to_json()
            )},
            uri=str(self.root),
            description=f"videos under {self.root}, cut into {self.clip_options.clip_seconds} s clips",
        )

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=str(p.relative_to(self.root)), path=str(p)) for p in self.videos]

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        options = self.clip_options
        if options.fps is None:
            # Clips keep the video's own rate, so it must be the source's (else its clips would play at
            # the wrong speed).
            rate = probe(item.path).fps
            if abs(rate - self.spec.fps) > 1e-3:
                raise ValueError(f"{item.path}: {rate} fps, but source {self.spec.name!r} is {self.spec.fps} fps")
        frames = iter_frames(item.path)
        clips = cut_clips(frames, sliding_windows(options), options.fps, item.key, item.path,
                          short_side_fit(options.short_side))
        yield from clip_episodes(
            clips, self.options.get("source", "videos"), self.options.get("camera", "rgb"), item.key
        )
