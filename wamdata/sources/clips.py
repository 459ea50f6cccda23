"""Cutting long videos into clips, shared by every video source (video folders, EPIC-KITCHENS, Ego4D, ...).

A video is read in one forward pass (``wamdata.media.decode.iter_frames``, or ``image_folder_frames`` for folders
of extracted frames) and cut as it streams: only the clips open at the current time are held in memory,
so a video of any length is cut in memory bounded by its longest clip.

Clips are either *requested* (an annotation row: a segment [start, stop) in seconds, or a window around
a narration) or *sliding windows* (length and stride in seconds). Frames are resampled to a target rate
by timestamp, so variable frame rate input comes out at a constant rate: output frame k is shown at
``k / fps`` seconds and is the source frame on screen at that time (the last one whose timestamp is not
after it). Without a target rate every source frame is kept, at its own time.

Whatever cannot be cut (a segment past the end of the video, a clip shorter than one frame, frames that
fail to decode) comes out as a ``Rejected`` naming the clip and the reason, in place of that clip; the
clips before and after it are still cut.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from wamdata.format.schema import Episode
from wamdata.media.decode import VideoDecodeError, VideoInfo, probe_video
from wamdata.media.frames import resize_image, resized_size
from wamdata.sources.base import Rejected

# Timestamps are compared with this slack (seconds): far below one frame at any real rate, far above the
# rounding of a frame number divided by a rate such as 60000/1001.
TIME_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ClipOptions:
    """How every video source cuts clips; adapters read these keys from their options.

    ``fps``: output rate (None keeps the source's frames and rate). ``short_side``: resize so the shorter
    side is this many pixels, keeping the aspect ratio (None keeps the size). ``clip_seconds`` and
    ``stride_seconds``: sliding windows (stride None means back to back). Annotated segments longer than
    ``max_clip_seconds`` are split into pieces of at most that length (None keeps them whole).
    """

    fps: float | None = None
    short_side: int | None = None
    clip_seconds: float = 4.0
    stride_seconds: float | None = None
    max_clip_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("fps", "short_side", "stride_seconds", "max_clip_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"clip option {name} must be positive, got {value!r}")
        if not self.clip_seconds > 0:
            raise ValueError(f"clip option clip_seconds must be positive, got {self.clip_seconds!r}")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ClipOptions:
        """The clip options among an adapter's keyword options (the others are the adapter's own)."""
        return cls(**{name: options[name] for name in cls.__dataclass_fields__ if name in options})

    @property
    def stride(self) -> float:
        return self.stride_seconds or self.clip_seconds


@dataclass(frozen=True)
class ClipRequest:
    """A clip to cut: [start, stop) in seconds of the video. ``key`` names it within its video; a
    ``required`` clip that cannot be cut is rejected, an optional one (a sliding window running past the
    end) is silently dropped. With ``min_stop``, a video that ends after ``min_stop`` but before ``stop``
    cuts the clip short at its end instead (a window around a narration near the end of a video)."""

    key: str
    start: float
    stop: float
    language: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    required: bool = True
    min_stop: float | None = None


@dataclass
class Clip:
    """A cut clip: frames (T, H, W, 3), the source presentation index and time of each frame."""

    request: ClipRequest
    frames: np.ndarray
    source_indices: list[int]
    times: list[float]
    stop: float  # the request's stop, or the video's end where the clip was cut short there

    @property
    def info(self) -> dict[str, Any]:
        """What an episode records about where it was cut from."""
        return {
            **self.request.info,
            "clip_start_sec": round(self.request.start, 6),
            "clip_stop_sec": round(self.stop, 6),
            "source_frames": [self.source_indices[0], self.source_indices[-1] + 1],
            "first_frame_sec": round(self.times[0], 6),
        }


class Frame(Protocol):
    """What cut_clips needs of a source frame (``wamdata.media.decode.StreamFrame``, ``ImageFile``, ``ArrayFrame``)."""

    index: int
    time: float

    def rgb(self) -> np.ndarray: ...


def clip_episodes(
    results: Iterable[Clip | Rejected],
    source: str,
    camera: str,
    video_key: str,
    info: dict[str, Any] | None = None,
    language: str | None = None,
    arrays: Callable[[Clip], dict[str, np.ndarray]] | None = None,
    cameras: Callable[[Clip], dict[str, np.ndarray]] | None = None,
) -> Iterator[Episode | Rejected]:
    """Cut clips as episodes of ``source`` (native key ``<video_key>#<clip key>``); rejections pass through.

    ``language`` is used where the clip has no text of its own; ``arrays`` and ``cameras`` give a clip's
    per-step arrays and other cameras' frames (taken at ``clip.source_indices``, so they stay aligned with
    the frames whatever the resampling)."""
    for result in results:
        if isinstance(result, Rejected):
            yield result
            continue
        yield Episode(
            source=source,
            native_key=f"{video_key}#{result.request.key}",
            num_steps=len(result.frames),
            frames={camera: result.frames, **(cameras(result) if cameras else {})},
            arrays=arrays(result) if arrays else {},
            language=result.request.language or language,
            info={"video": video_key, **(info or {}), **result.info},
        )


def probe(path: str | Path) -> VideoInfo:
    """``probe_video`` with the file named in its error (a work item's reason must say which file)."""
    try:
        return probe_video(path)
    except VideoDecodeError as exc:
        raise VideoDecodeError(f"{path}: {exc}") from exc


def common_format(formats: dict[str, VideoInfo], options: ClipOptions) -> tuple[float, int, int]:
    """(fps, height, width) every clip of a source will have, from each video's probed format: one
    source has one rate and one frame size, so videos that differ need ``fps`` / ``short_side`` options
    (and one aspect ratio); otherwise this raises, naming two videos that differ."""
    if not formats:
        raise ValueError("no videos to take a format from")
    shapes: dict[tuple[float, int, int], str] = {}
    for name, info in formats.items():
        width, height = (info.width, info.height)
        if options.short_side is not None:
            width, height = resized_size(width, height, options.short_side)
        shapes.setdefault((options.fps or info.fps, height, width), name)
    if len(shapes) > 1:
        (a, first), (b, second) = list(shapes.items())[:2]
        raise ValueError(
            f"videos differ in (fps, height, width) after resizing: {first} {a}, {second} {b}; "
            "set the fps option, short_side, or ingest them as separate sources"
        )
    return next(iter(shapes))


def split_long(request: ClipRequest, max_seconds: float | None) -> list[ClipRequest]:
    """A segment as pieces of at most max_seconds (the last may be shorter); one piece if it fits."""
    if max_seconds is None or request.stop - request.start <= max_seconds + TIME_TOLERANCE:
        return [request]
    count = math.ceil((request.stop - request.start) / max_seconds - TIME_TOLERANCE)
    return [
        ClipRequest(
            key=f"{request.key}/part-{i}",
            start=request.start + i * max_seconds,
            stop=min(request.stop, request.start + (i + 1) * max_seconds),
            language=request.language,
            info={**request.info, "part": i, "parts": count},
            required=request.required,
        )
        for i in range(count)
    ]


def whole_video() -> list[ClipRequest]:
    """One clip from the first frame to the last, however long the video."""
    return [ClipRequest(key="all", start=0.0, stop=math.inf, min_stop=0.0)]


def sliding_windows(options: ClipOptions) -> Iterator[ClipRequest]:
    """Windows of clip_seconds every stride seconds, without end: those past the video are dropped."""
    for i in itertools.count():
        start = i * options.stride
        yield ClipRequest(
            key=f"{start:.3f}-{start + options.clip_seconds:.3f}s",
            start=start,
            stop=start + options.clip_seconds,
            required=False,
        )


def _output_frames(frames: Iterable[Frame], fps: float | None) -> Iterator[tuple[float, Frame]]:
    """(time, source frame) of each output frame; without fps, every source frame at its own time. The
    generator's return value is the time the video ends (the last frame's time plus its duration)."""
    previous: Frame | None = None
    duration = 0.0
    next_grid = 0
    for frame in frames:
        if previous is not None:
            duration = frame.time - previous.time
            if duration <= 0:
                raise VideoDecodeError(
                    f"frame {frame.index} is at {frame.time:.6f}s, not after frame {previous.index} "
                    f"({previous.time:.6f}s): timestamps out of order"
                )
            if fps is None:
                yield previous.time, previous
            else:
                # The previous frame is on screen until this one: it fills every grid point before it.
                while next_grid / fps < frame.time - TIME_TOLERANCE:
                    yield next_grid / fps, previous
                    next_grid += 1
        previous = frame
    if previous is None:
        return 0.0
    if not duration:
        duration = 1.0 / fps if fps else 0.0
    end = previous.time + duration
    if fps is None:
        yield previous.time, previous
    else:
        while next_grid / fps < end - TIME_TOLERANCE:
            yield next_grid / fps, previous
            next_grid += 1
    return end


class _OpenClip:
    def __init__(self, request: ClipRequest) -> None:
        self.request = request
        self.frames: list[np.ndarray] = []
        self.source_indices: list[int] = []
        self.times: list[float] = []

    def clip(self, stop: float) -> Clip:
        return Clip(self.request, np.stack(self.frames), self.source_indices, self.times, stop)


def cut_clips(
    frames: Iterable[Frame], requests: Iterable[ClipRequest], fps: float | None, video_key: str, where: str,
    fit: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[Clip | Rejected]:
    """Cut the requested clips (given in order of their start) from one pass over ``frames``, yielding each
    when it ends; ``fit`` brings each source frame a clip uses to the clips' size (once per source frame).

    ``video_key`` names the video in rejection keys, ``where`` (its path) in reasons. Stops reading as
    soon as every requested clip is cut. A decode error rejects the clips still open or to come (with the
    frame where it failed); the clips finished before it are kept.
    """
    pending = iter(requests)
    upcoming: ClipRequest | None = next(pending, None)
    open_clips: list[_OpenClip] = []
    last_rgb: tuple[int, np.ndarray] | None = None  # one source frame can fill several output frames
    outputs = _output_frames(frames, fps)
    end = time = 0.0
    cut_any = False
    try:
        while True:
            try:
                time, frame = next(outputs)
            except StopIteration as stop:
                end = stop.value
                break
            for clip in [c for c in open_clips if time >= c.request.stop - TIME_TOLERANCE]:
                open_clips.remove(clip)
                cut_any = True
                yield _finished(clip, fps, video_key, where)
            while upcoming is not None and upcoming.start - TIME_TOLERANCE <= time:
                if upcoming.stop < upcoming.start:
                    yield _reject(upcoming, video_key, where, f"ends ({upcoming.stop:.3f}s) before it starts")
                else:
                    open_clips.append(_OpenClip(upcoming))
                following = next(pending, None)
                if following is not None and following.start < upcoming.start:
                    raise ValueError(f"{where}: clip requests out of order ({following.key} after {upcoming.key})")
                upcoming = following
            if not open_clips:
                if upcoming is None:
                    return
                continue
            if last_rgb is None or last_rgb[0] != frame.index:
                last_rgb = (frame.index, frame.rgb() if fit is None else fit(frame.rgb()))
            for clip in open_clips:
                if time < clip.request.stop - TIME_TOLERANCE:
                    clip.frames.append(last_rgb[1])
                    clip.source_indices.append(frame.index)
                    clip.times.append(time)
    except VideoDecodeError as exc:
        if last_rgb is None and not open_clips:
            # Nothing of the video could be read: the whole work item fails, naming the file.
            raise VideoDecodeError(f"{where}: {exc}") from exc
        reason = f"{exc} (after source frame {last_rgb[0] if last_rgb else 'none'}, at {time:.3f}s)"
        for clip in open_clips:
            yield _reject(clip.request, video_key, where, reason)
        while upcoming is not None and upcoming.required:
            yield _reject(upcoming, video_key, where, reason)
            upcoming = next(pending, None)
        if upcoming is not None:
            lost = f"{where}: the rest of the video is lost: {reason}"
            yield Rejected(f"{video_key}@{upcoming.start:.3f}s-end", lost)
        return
    past_end = f"after the video's end at {end:.3f}s"
    for clip in open_clips:
        min_stop = clip.request.min_stop
        if clip.request.stop <= end + TIME_TOLERANCE or (min_stop is not None and min_stop < end):
            yield _finished(clip, fps, video_key, where, end)
        elif clip.request.required or not cut_any:
            # An optional window is dropped at the end, unless the whole video is shorter than one.
            yield _reject(clip.request, video_key, where, f"ends at {clip.request.stop:.3f}s, {past_end}")
    while upcoming is not None and upcoming.required:
        yield _reject(upcoming, video_key, where, f"starts at {upcoming.start:.3f}s, {past_end}")
        upcoming = next(pending, None)


def _reject(request: ClipRequest, video_key: str, where: str, reason: str) -> Rejected:
    return Rejected(f"{video_key}#{request.key}", f"{where}: clip {request.key} [{request.start:.3f}s, "
                    f"{request.stop:.3f}s): {reason}")


def _finished(clip: _OpenClip, fps: float | None, video_key: str, where: str, end: float = math.inf) -> Clip | Rejected:
    if not clip.frames:
        rate = f"{fps} fps" if fps else "the video's rate"
        return _reject(clip.request, video_key, where, f"holds no frame at {rate}")
    return clip.clip(min(clip.request.stop, end))


# ---------------------------------------------------------------------------------- extracted frames


def short_side_fit(short_side: int | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """A frame resized (the one resize) so its shorter side is short_side, keeping the aspect ratio; None keeps
    frames as they are."""
    if short_side is None:
        return None

    def fit(rgb: np.ndarray) -> np.ndarray:
        width, height = resized_size(rgb.shape[1], rgb.shape[0], short_side)
        return resize_image(rgb, height, width)
    return fit


@dataclass
class ImageFile:
    """A frame stored as an image file (EPIC-KITCHENS rgb_frames), read only if a clip needs it."""

    index: int
    time: float
    path: Path

    def rgb(self) -> np.ndarray:
        try:
            with Image.open(self.path) as image:
                return np.asarray(image.convert("RGB"))
        except OSError as exc:
            raise VideoDecodeError(f"{self.path}: unreadable image: {exc}") from exc


def image_folder_frames(paths: list[Path], fps: float) -> Iterator[ImageFile]:
    """Image files (already in frame order) as frames at ``fps``: file i is shown at i / fps."""
    for index, path in enumerate(paths):
        yield ImageFile(index, index / fps, path)


@dataclass
class ArrayFrame:
    """Frame ``index`` of an array of frames (T, H, W, 3), e.g. an HDF5 dataset read one frame at a time."""

    index: int
    time: float
    frames: Any

    def rgb(self) -> np.ndarray:
        return np.asarray(self.frames[self.index])


def array_frames(frames: Any, fps: float) -> Iterator[ArrayFrame]:
    """The frames of an array (anything indexable with a length, such as an h5py dataset) at ``fps``."""
    for index in range(len(frames)):
        yield ArrayFrame(index, index / fps, frames)
