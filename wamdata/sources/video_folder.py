"""Any folder of videos (mp4, mkv, webm, avi, mov; searched recursively), no labels, cut into sliding
windows (the input may also be one video). Each video is one work item; its clips are its episodes.

The videos may differ in rate, size, orientation and codec: the source's one rate and frame size are chosen
as ``wamdata.sources.clips`` says (lowest rate; ``fit: crop`` to the most common aspect ratio, or ``pad``),
and announced. A video that cannot be opened is quarantined with its reason; the others are ingested.

Options: ``fps``, ``short_side``, ``fit`` ("crop" or "pad"), ``aspect`` ("16:9"), ``video`` (codec fields
of the stored clips, e.g. ``{pix_fmt: yuv444p}``), ``clip_seconds`` (default 4), ``stride_seconds``
(default: back to back), ``source`` (default "videos"), ``camera`` (default "rgb"), ``kind`` (default
"egocentric_video"), ``embodiment`` (default "human").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from wamdata.format.schema import Episode
from wamdata.media.decode import VideoInfo, iter_frames
from wamdata.sources.base import Rejected, WorkItem, find_files, register
from wamdata.sources.clips import SourceNaming, VideoClipSource, WindowOptions, probe_all, sliding_windows

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclass(frozen=True)
class VideoFolderOptions(WindowOptions, SourceNaming):
    clip_seconds: float = 4.0


@register
class VideoFolderSource(VideoClipSource):
    format = "video_folder"
    Options = VideoFolderOptions

    @cached_property
    def videos(self) -> dict[str, Path]:
        """Every video below the folder (or the one video given), by its path relative to the folder (the
        work item's key)."""
        return {str(p.relative_to(self.root)) if p != self.root else p.name: p
                for p in find_files(self.root, VIDEO_SUFFIXES, "videos")}

    def video_formats(self) -> dict[str, VideoInfo | Exception]:
        return probe_all(self.videos)

    def description(self) -> str:
        return f"videos under {self.root}, cut into {self.options.clip_seconds} s clips"

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=key, path=str(path)) for key, path in self.videos.items()]

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        self.format_of(item.key)  # a video that could not be probed fails here, with the reason kept
        windows = sliding_windows(self.options.clip_seconds, self.options.stride_seconds)
        yield from self.episodes(self.clips(iter_frames(item.path), windows, item.key, item.path), item.key)
