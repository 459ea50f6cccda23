"""What every video source shares (video folders, EPIC-KITCHENS, Ego4D, EgoDex, EgoMimic): its options, one
frame rate and frame size for all its clips, and cutting long videos into clips.

**One rate, one size.** A source's clips all have one rate and one frame size, whatever its videos run at.
Videos at several rates are resampled to one: ``fps`` when set, else the lowest rate among them (resampling
down never shows a frame twice; it drops frames of the faster videos). Videos of several sizes or
orientations (counted upright, as they are shown) go to one size through ``wamdata.media.frames.FrameFit``
(the one resize): ``fit: crop`` (the default) cuts the centre of each frame at the target aspect ratio,
``fit: pad`` letterboxes the whole frame in black; ``aspect`` ("16:9", "1:1") sets that ratio, by default
the most common one among the videos. ``short_side`` sets the size; without it, the size of the videos when
they all agree, else the largest size at that aspect to which no video has to be enlarged (when all share
the aspect ratio: the smallest video). Every such choice is announced as a ``DefaultChosen`` warning naming
what was found and the option that changes it.

Crop keeps every output pixel filled with picture at the cost of the edges of frames of another shape; pad
keeps the whole picture at the cost of bars (black, no picture) and of resolution: the picture is shrunk
to fit inside. Measured with ``benchmarks/ingest_video.py --fits`` on the real edge-case videos plus the
five GR00T ego-view videos (1140 frames at 10 fps, 2 s clips): at short side 64 and the most common aspect
(1:1), pad stores 485 bytes a frame against crop's 503, with 5.0% of output pixels bars; at 16:9 (114x64)
pad stores 521 against 799, with 38.9% bars, since the six square videos shrink to 64x64 inside each frame;
frames/s are within run-to-run noise (438-595 on two shared cores). Crop is the default because a model
trained on the clips then never spends pixels or capacity on bars; pad is for when the whole field of view
matters more (the hands at the edge of a portrait video).

**Corrupt input never ends a run.** Every video is probed once, when the source is described; a video that
cannot be opened or probed is kept with its reason, left out of the choice of rate and size, and its work
item's ``read`` raises that reason, so the pipeline quarantines it and ingests the videos beside it.

**Cutting.** A video is read in one forward pass (``wamdata.media.decode.iter_frames``, or
``image_folder_frames`` for folders of extracted frames) and cut as it streams: only the clips open at the
current time are held in memory, so a video of any length is cut in memory bounded by its longest clip.
Clips are either *requested* (an annotation row: a segment [start, stop) in seconds, or a window around a
narration) or *sliding windows* (length and stride in seconds). Frames are resampled to the target rate by
timestamp, so variable frame rate input comes out at a constant rate: output frame k is shown at ``k / fps``
seconds and is the source frame on screen at that time (the last one whose timestamp is not after it).
Without resampling every source frame is kept, at its own time. Whatever cannot be cut (a segment past the
end of the video, a clip shorter than one frame, frames that fail to decode) comes out as a ``Rejected``
naming the clip and the reason, in place of that clip; the clips before and after it are still cut.
"""

from __future__ import annotations

import itertools
import math
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from PIL import Image

from wamdata.format.schema import ArraySpec, CameraSpec, Episode, SourceKind, SourceSpec
from wamdata.media.codec import codec_with
from wamdata.media.decode import VideoDecodeError, VideoInfo, probe_video
from wamdata.media.frames import FrameFit, resized_size
from wamdata.sources.base import DefaultChosen, Rejected, SourceAdapter, described, entry_of, require_positive

# Timestamps are compared with this slack (seconds): far below one frame at any real rate, far above the
# rounding of a frame number divided by a rate such as 60000/1001.
TIME_TOLERANCE = 1e-4
# Rates closer than this (frames/s) are one rate: a container's average rate is a rounded ratio.
RATE_TOLERANCE = 1e-3
# Frame sizes whose aspect ratios differ by less than this fraction share one (426x240 is 16:9 to 0.2%).
ASPECT_TOLERANCE = 0.01


# ------------------------------------------------------------------------------------------- options

def parse_aspect(text: str) -> tuple[int, int]:
    """"16:9" -> (16, 9); ValueError on anything but two positive whole numbers."""
    width, sep, height = text.partition(":")
    if not (sep and width.strip().isdigit() and height.strip().isdigit() and int(width) and int(height)):
        raise ValueError(f"option aspect must be WIDTH:HEIGHT in whole numbers (e.g. \"16:9\"), got {text!r}")
    return int(width), int(height)


@dataclass(frozen=True)
class ClipOptions:
    """How every video source's frames come out (see the module's docstring for the choices without them).

    ``fps``: the clips' rate. ``short_side``: the shorter side of the clips' frames, in pixels. ``fit``:
    "crop" or "pad", how a frame of another aspect ratio is brought to the clips'. ``aspect``: the clips'
    aspect ratio, "WIDTH:HEIGHT". ``video``: codec fields for the stored clips (``{pix_fmt: yuv444p}``).
    """

    fps: float | None = None
    short_side: int | None = None
    fit: Literal["crop", "pad"] = "crop"
    aspect: str | None = None
    video: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        require_positive(self, "fps", "short_side")
        if self.aspect is not None:
            parse_aspect(self.aspect)
        codec_with(self.video)  # a mistyped codec field fails here, with the other options


@dataclass(frozen=True)
class WindowOptions(ClipOptions):
    """Clip options plus sliding windows: ``clip_seconds`` long (None: one clip per video, for the adapters
    whose videos are episodes), every ``stride_seconds`` (None: back to back)."""

    clip_seconds: float | None = None
    stride_seconds: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "clip_seconds", "stride_seconds")


@dataclass(frozen=True)
class SourceNaming:
    """What a one-source video adapter's episodes are called and counted as: ``source`` (the source's name),
    ``camera`` (its one camera), ``kind`` (source_kind), ``embodiment``."""

    source: str = "videos"
    camera: str = "rgb"
    kind: SourceKind = "egocentric_video"
    embodiment: str = "human"


# ------------------------------------------------------------------------------ one rate, one size


@dataclass(frozen=True)
class FrameFormat:
    """What every clip of a source has: its rate ``fps``, the rate frames are resampled to (None: every video
    runs at ``fps`` and keeps its own frames) and the fit that brings each frame to the clips' size."""

    fps: float
    resample: float | None
    fit: FrameFit

    @property
    def height(self) -> int:
        return self.fit.height

    @property
    def width(self) -> int:
        return self.fit.width


def resolve_format(formats: Mapping[str, VideoInfo], options: ClipOptions, what: str) -> FrameFormat:
    """The rate and frame size of ``what`` (a source or a camera of one), from the probed format of each of
    its readable videos and the options; a choice the options left open is announced as DefaultChosen."""
    if not formats:
        raise ValueError(f"{what}: no readable video to take a frame rate and size from")
    fps, resample = _resolve_rate(formats, options.fps, what)
    height, width = _resolve_size(formats, options, what)
    return FrameFormat(fps, resample, FrameFit(height, width, options.fit))


def _rate_text(rate: float) -> str:
    return f"{rate:.3f}".rstrip("0").rstrip(".")


def _resolve_rate(formats: Mapping[str, VideoInfo], fps: float | None, what: str) -> tuple[float, float | None]:
    if fps is not None:
        return fps, fps
    rates: list[float] = []
    for rate in sorted(info.fps for info in formats.values() if info.fps > 0):
        if not rates or rate - rates[-1] > RATE_TOLERANCE:
            rates.append(rate)
    if not rates:
        raise ValueError(f"{what}: no video declares its frame rate; set the fps option")
    if len(rates) == 1:
        return rates[0], None
    warnings.warn(
        f"{what}: the videos run at {', '.join(_rate_text(r) for r in rates)} fps; every clip is resampled to the "
        f"lowest, {_rate_text(rates[0])} fps, which drops frames of the faster videos and repeats none "
        "(set the fps option to choose the rate)", DefaultChosen, stacklevel=2)
    return rates[0], rates[0]


def _aspect_text(width: int, height: int) -> str:
    ratio = Fraction(width, height)
    return f"{ratio.numerator}:{ratio.denominator}" if ratio.denominator <= 32 else f"{width / height:.3f}:1"


def _resolve_size(formats: Mapping[str, VideoInfo], options: ClipOptions, what: str) -> tuple[int, int]:
    """(height, width) of the clips: see the module's docstring."""
    sizes: dict[tuple[int, int], int] = {}
    for info in formats.values():
        sizes[(info.width, info.height)] = sizes.get((info.width, info.height), 0) + 1
    groups: list[list[Any]] = []  # [(width, height) of the first size of an aspect ratio, count of videos]
    for (width, height), count in sizes.items():
        group = next((g for g in groups if abs(width * g[0][1] - height * g[0][0]) <= ASPECT_TOLERANCE
                      * height * g[0][0]), None)
        if group is None:
            groups.append([(width, height), count])
        else:
            group[1] += count
    most = max(count for _, count in groups)
    common = next(size for size, count in groups if count == most)  # ties: the first in input order
    aspect_w, aspect_h = parse_aspect(options.aspect) if options.aspect else common
    fit = "centre-cropped" if options.fit == "crop" else "letterboxed in black"
    if options.aspect:
        aspect_note = f"{_aspect_text(aspect_w, aspect_h)}, the aspect option"
    else:
        tied = sum(count == most for _, count in groups) > 1
        aspect_note = (f"{_aspect_text(aspect_w, aspect_h)}, "
                       + ("the first video's of the most common aspect ratios" if tied else
                          f"the aspect ratio of {most} of {len(formats)} videos"))
    if options.short_side is not None:
        width, height = resized_size(aspect_w, aspect_h, options.short_side)
        if len(groups) > 1 and not options.aspect:
            warnings.warn(f"{what}: the videos have {len(groups)} aspect ratios ({_size_list(sizes)}); every clip "
                          f"is {width}x{height} ({aspect_note}), other frames {fit} (set the aspect option, and "
                          "fit: crop or pad, to choose)", DefaultChosen, stacklevel=3)
        return height, width
    if len(sizes) == 1 and not options.aspect:
        (width, height), = sizes
        if width % 2 == 0 and height % 2 == 0:
            return height, width
    # The largest size at the aspect ratio for which no video is enlarged: a cropped frame must cover the
    # output in both directions, a padded one must fill it in one.
    bound = min if options.fit == "crop" else max
    scale = min(bound(h / aspect_h, w / aspect_w) for w, h in sizes)
    width, height = 2 * max(1, math.floor(scale * aspect_w / 2)), 2 * max(1, math.floor(scale * aspect_h / 2))
    warnings.warn(f"{what}: the videos are {_size_list(sizes)}; every clip is {width}x{height} ({aspect_note}; "
                  f"the largest size no video is enlarged to), other frames {fit} (set short_side, aspect, and fit: "
                  "crop or pad, to choose)", DefaultChosen, stacklevel=3)
    return height, width


def _size_list(sizes: Mapping[tuple[int, int], int], most: int = 6) -> str:
    listed = [f"{w}x{h}" + (f" ({n} videos)" if n > 1 else "") for (w, h), n in list(sizes.items())[:most]]
    return ", ".join(listed) + (f" and {len(sizes) - most} more sizes" if len(sizes) > most else "")


def camera_spec(frame_format: FrameFormat, video: dict[str, Any] | None) -> CameraSpec:
    """The spec of a camera whose clips have ``frame_format``, stored with the codec fields ``video``."""
    return CameraSpec(frame_format.height, frame_format.width, codec_with(video).to_json())


# What ``probe`` raises: each names the file.
PROBE_ERRORS = (VideoDecodeError, OSError)


def probe(path: str | Path) -> VideoInfo:
    """``probe_video`` with the file named in its error (a work item's reason must say which file). A missing
    file stays a FileNotFoundError; whatever else fails while opening or probing is a VideoDecodeError."""
    try:
        return probe_video(path)
    except FileNotFoundError:
        raise
    except VideoDecodeError as exc:
        raise VideoDecodeError(f"{path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a demuxer's or decoder's failure on a damaged file, of any type
        raise VideoDecodeError(f"{path}: {type(exc).__name__}: {exc}") from exc


def probe_all(paths: Mapping[str, Path]) -> dict[str, VideoInfo | Exception]:
    """Each video probed, by key; a video that cannot be probed has the error (which names it) in place of its
    format."""
    return described(paths, probe, keep=PROBE_ERRORS)


class VideoClipSource(SourceAdapter):
    """A source of clips cut from videos, one camera, one source: ``Options`` holds ``ClipOptions`` and
    ``SourceNaming``. Subclasses say where each work item's video is and what it holds (``video_formats``),
    and read it with ``clips``; the rate, the frame size and the spec are resolved here, once."""

    Options: ClassVar[type]  # a frozen dataclass of ClipOptions (or WindowOptions), SourceNaming and its own

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.root = Path(input)

    @abstractmethod
    def video_formats(self) -> dict[str, VideoInfo | Exception]:
        """Each work item's video format (by the item's key), or the error that kept it from being read."""

    def description(self) -> str:
        return f"videos under {self.root}"

    def arrays(self) -> dict[str, ArraySpec]:
        """The per-step arrays of the source's episodes (none: video alone)."""
        return {}

    @cached_property
    def probed(self) -> dict[str, VideoInfo | Exception]:
        return self.video_formats()

    def format_of(self, key: str) -> VideoInfo:
        """The probed format of a work item's video; raises what kept it from being probed."""
        return entry_of(self.probed, key)

    @cached_property
    def frame_format(self) -> FrameFormat:
        readable = {key: info for key, info in self.probed.items() if isinstance(info, VideoInfo)}
        return resolve_format(readable, self.options, f"source {self.options.source!r}")

    def describe(self) -> list[SourceSpec]:
        options = self.options
        return [SourceSpec(
            name=options.source,
            kind=options.kind,
            format=self.format,
            embodiment=options.embodiment,
            fps=self.frame_format.fps,
            cameras={options.camera: camera_spec(self.frame_format, options.video)},
            arrays=self.arrays(),
            uri=str(self.root),
            description=self.description(),
        )]

    def clips(self, frames: Iterable[Frame], requests: Iterable[ClipRequest], key: str, where: str
              ) -> Iterator[Clip | Rejected]:
        """``cut_clips`` at the source's rate and frame size."""
        return cut_clips(frames, requests, self.frame_format.resample, key, where, self.frame_format.fit)

    def episodes(self, results: Iterable[Clip | Rejected], key: str, **episode: Any) -> Iterator[Episode | Rejected]:
        """``clip_episodes`` of this source's camera (``episode``: clip_episodes' optional arguments)."""
        return clip_episodes(results, self.options.source, self.options.camera, key, **episode)


# ------------------------------------------------------------------------------------------- cutting


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


def sliding_windows(clip_seconds: float, stride_seconds: float | None = None) -> Iterator[ClipRequest]:
    """Windows of clip_seconds every stride_seconds (None: back to back), without end: those past the video
    are dropped."""
    stride = stride_seconds or clip_seconds
    for i in itertools.count():
        start = i * stride
        yield ClipRequest(key=f"{start:.3f}-{start + clip_seconds:.3f}s", start=start, stop=start + clip_seconds,
                          required=False)


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
