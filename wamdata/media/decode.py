"""Frame-accurate decoding of episode cameras and of users' videos (PyAV).

Trainers read random clips out of encoded blobs, so ``decode_frames`` is built for short ranges: it seeks
to the keyframe before ``start``, decodes forward and maps each decoded frame to its index by timestamp,
so the result is exactly frames ``[start, stop)`` in presentation order whatever the GOP, B-frame
reordering or negative DTS of the file. ``iter_frames`` streams a whole video once, in constant memory.

Frame indices are presentation indices. For containers whose declared frame count and duration agree
with the declared rate (MP4/MOV/AVI written by a normal muxer), indices come from
``(pts - start_time) / frame_duration`` without reading the file; other inputs (Matroska, variable frame
rate) are indexed by scanning the packet timestamps first. Frames of a video with a rotation display
matrix are returned rotated, as players show them. Frames come out at their stored size: resizing is
``wamdata.media.frames``'s one resize, applied by whoever needs another size.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av import VideoFrame, VideoStream
from av.container import InputContainer
from av.video.reformatter import VideoReformatter


class VideoDecodeError(ValueError):
    """The input is not a decodable video or is corrupt where the requested frames lie."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int
    codec: str


VideoSource = bytes | str | os.PathLike


def _require_file(video: VideoSource) -> None:
    # A missing file is the caller's mistake, not a corrupt video: keep it a FileNotFoundError.
    if not isinstance(video, bytes) and not os.path.isfile(video):
        raise FileNotFoundError(f"no video file at {os.fspath(video)}")


def _check_range(start: int, stop: int | None, num_frames: int) -> int:
    stop = num_frames if stop is None else stop
    if not 0 <= start < stop <= num_frames:
        raise ValueError(f"frame range [{start}, {stop}) is empty or outside the video's {num_frames} frames")
    return stop


def decode_frames(video: VideoSource, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Decode frames ``[start, stop)`` (presentation order) as uint8 RGB (stop - start, H, W, 3).

    ``video`` is the encoded bytes or a path; ``stop`` None means the end. An empty range or one outside
    the video raises ValueError naming the range and the frame count. Corrupt input raises
    VideoDecodeError, but only when the requested frames cannot be decoded: a clip that lies before the
    point where decoding fails is returned, and a full-range decode of such a file raises, which is how a
    validator finds it.
    """
    _require_file(video)
    with _open_container(video) as container:
        stream = container.streams.video[0]
        timeline = _Timeline.of(container, stream)
        stop = _check_range(start, stop, timeline.num_frames)
        try:
            return _decode_range(container, stream, timeline, start, stop)
        except _OffTimeline:
            timeline = _Timeline.scanned(container, stream)
            stop = _check_range(start, stop, timeline.num_frames)
            return _decode_range(container, stream, timeline, start, stop)


def decode_frame_ranges(
    video: VideoSource, ranges: Sequence[tuple[int, int]], merge_gap: int = 16
) -> list[np.ndarray]:
    """Frames ``[start, stop)`` of each range, in the order given, opening the video once (PyAV).

    Ranges that overlap or lie within ``merge_gap`` frames of each other are decoded in one pass: a data
    loader that needs several clips of one episode decodes their shared frames, and the run from the
    keyframe before them, once. ``merge_gap`` about the GOP length is where decoding on beats seeking.
    """
    _require_file(video)
    with _open_container(video) as container:
        stream = container.streams.video[0]
        timeline = _Timeline.of(container, stream)
        for start, stop in ranges:
            _check_range(start, stop, timeline.num_frames)
        spans: list[list[int]] = []
        for start, stop in sorted(ranges):
            if spans and start <= spans[-1][1] + merge_gap:
                spans[-1][1] = max(spans[-1][1], stop)
            else:
                spans.append([start, stop])
        decoded = []
        for start, stop in spans:  # ascending, so only the first span can start at frame 0 (no seek)
            try:
                decoded.append((start, _decode_range(container, stream, timeline, start, stop)))
            except _OffTimeline:
                timeline = _Timeline.scanned(container, stream)
                decoded.append((start, _decode_range(container, stream, timeline, start, stop)))
    out = []
    for start, stop in ranges:
        span_start, frames = next((s, f) for s, f in reversed(decoded) if s <= start)
        out.append(frames[start - span_start: stop - span_start])
    return out


def probe_video(video: VideoSource) -> VideoInfo:
    """Frame count, rate, displayed size (after rotation) and codec name ("h264", "mjpeg", "av1", ...).

    The first frame is decoded, since only decoded frames carry the rotation.
    """
    _require_file(video)
    with _open_container(video) as container:
        stream = container.streams.video[0]
        timeline = _Timeline.of(container, stream)
        first = next(_decoded_frames(container, stream), None)
        if first is None:
            raise VideoDecodeError("the video stream has no decodable frame")
        height, width = _to_rgb(first, VideoReformatter()).shape[:2]
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            timeline.num_frames, float(rate or 0.0), width, height, stream.codec_context.codec.canonical_name
        )


def _open_container(video: VideoSource) -> InputContainer:
    try:
        container = av.open(io.BytesIO(video) if isinstance(video, bytes) else os.fspath(video))
    except av.FFmpegError as exc:
        raise VideoDecodeError(f"not a readable video container: {exc}") from exc
    except UnicodeDecodeError as exc:
        # PyAV decodes the container's metadata tags as UTF-8 while opening: a few flipped bytes there
        # (a damaged file) fail the open although the frames may be intact.
        raise VideoDecodeError(f"not a readable video container: its metadata tags are not UTF-8 ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError("the container has no video stream")
    # One decoding thread: data loaders run a decoder per worker process, and for short clips of small
    # frames FFmpeg's thread pools cost more than they save.
    container.streams.video[0].codec_context.thread_count = 1
    return container


@dataclass(frozen=True)
class _Timeline:
    """Presentation index <-> timestamp of every frame of a stream."""

    num_frames: int
    start_pts: int = 0
    step: int = 0  # ticks per frame when the stream is constant frame rate, else 0
    pts: tuple[int, ...] = ()  # sorted timestamps of all frames when it is not

    @classmethod
    def of(cls, container: InputContainer, stream: VideoStream) -> _Timeline:
        rate, duration = stream.average_rate, stream.duration
        if stream.frames > 0 and rate and duration and stream.time_base:
            step = 1 / (Fraction(rate) * stream.time_base)
            if step.denominator == 1 and duration == stream.frames * step:
                return cls(stream.frames, stream.start_time or 0, int(step))
        return cls.scanned(container, stream)

    @classmethod
    def scanned(cls, container: InputContainer, stream: VideoStream) -> _Timeline:
        """Read every packet's timestamp (no decoding), then rewind."""
        try:
            container.seek(0)
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
            container.seek(0)
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"cannot read the packets: {exc}") from exc
        if not pts:
            raise VideoDecodeError("the video stream has no frames")
        return cls(len(pts), pts=tuple(pts))

    def pts_of(self, index: int) -> int:
        return self.start_pts + index * self.step if self.step else self.pts[index]

    def index_of(self, pts: int) -> int | None:
        """Index of the frame with this timestamp; None if no frame of the timeline has it."""
        if self.step:
            index, offset = divmod(pts - self.start_pts, self.step)
            return index if offset == 0 else None
        i = bisect.bisect_left(self.pts, pts)
        return i if i < len(self.pts) and self.pts[i] == pts else None


def _decoded_frames(
    container: InputContainer, stream: VideoStream, skip_before_pts: int | None = None
) -> Iterator[VideoFrame]:
    """Frames in presentation order from the current position; on a decode error, the frames the decoder
    still holds are drained first and then VideoDecodeError is raised.

    With ``skip_before_pts``, frames no other frame references (most B-frames) are not decoded until the
    first packet at or after that timestamp: a clip needs the reference frames between the keyframe and its
    start, not the others (FFmpeg's skip_frame=NONREF; x264's default GOP has 1 in 4-5 such frames).
    H.264 only: dav1d (AV1) returns frames with a delay, so a flag switched per packet misses frames.
    """
    codec = stream.codec_context
    if codec.name != "h264":
        skip_before_pts = None
    if skip_before_pts is not None:
        codec.skip_frame = "NONREF"
    try:
        for packet in container.demux(stream):
            if skip_before_pts is not None and (packet.pts is None or packet.pts >= skip_before_pts):
                codec.skip_frame = "DEFAULT"
                skip_before_pts = None
            yield from codec.decode(packet)
    except av.FFmpegError as exc:
        # If draining fails too, the decoder is past saving; the first error is the one to report.
        with contextlib.suppress(av.FFmpegError):
            yield from codec.decode(None)
        raise VideoDecodeError(f"decoding failed ({type(exc).__name__}: {exc})") from exc
    finally:
        codec.skip_frame = "DEFAULT"


def _to_rgb(frame: VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    # A reformatter shared across a clip's frames keeps its swscale context (frame.to_ndarray builds a
    # new one, with a thread pool, per frame: 5-20x slower on small frames).
    rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, k=frame.rotation // 90)) if frame.rotation else rgb


@dataclass
class StreamFrame:
    """One frame of a sequential decoding pass: its presentation index, its time in seconds after the
    stream's start, and its RGB image, converted (and rotated upright) only when asked for, so a pass that
    keeps one frame in three converts one in three."""

    index: int
    time: float
    _frame: VideoFrame
    _reformatter: VideoReformatter

    def rgb(self) -> np.ndarray:
        return _to_rgb(self._frame, self._reformatter)


def iter_frames(video: VideoSource) -> Iterator[StreamFrame]:
    """Every frame of a video in presentation order, decoded in one forward pass that holds one frame at
    a time, so a video of any length streams in constant memory.

    Times come from each frame's timestamp (variable frame rate streams keep their real timing); rotated
    videos come out upright. A decode error is raised as VideoDecodeError after the frames decoded before it.
    """
    _require_file(video)
    with _open_container(video) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base or Fraction(1, 1)
        rate = stream.average_rate or stream.guessed_rate
        origin = stream.start_time
        reformatter = VideoReformatter()
        for index, frame in enumerate(_decoded_frames(container, stream)):
            if frame.pts is None:
                # No timestamp at all (raw elementary streams): only the nominal rate is left.
                if not rate:
                    raise VideoDecodeError(f"frame {index} has no timestamp and the stream declares no frame rate")
                time = float(index / Fraction(rate))
            else:
                origin = frame.pts if origin is None else origin
                time = float((frame.pts - origin) * time_base)
            yield StreamFrame(index, time, frame, reformatter)


class _OffTimeline(Exception):
    """A decoded timestamp is not on the constant-rate grid, so the stream must be indexed by scanning."""


def _decode_range(
    container: InputContainer, stream: VideoStream, timeline: _Timeline, start: int, stop: int
) -> np.ndarray:
    # A seek should land on the last keyframe at or before the target, but some demuxers compare DTS
    # (MPEG-TS, FLV: with B-frames that keyframe is shown after the target) or stop on a non-keyframe, so
    # the first frame decoded can come after `start`, or none at all. Then seek again from further back,
    # doubling the distance, down to the first frame.
    back = 0
    reformatter = VideoReformatter()
    while True:
        if back and back >= start:
            # Seeking to the first frame's timestamp can land past it too (MPEG-TS); time 0 is before it.
            container.seek(0)
        elif start > 0:
            container.seek(timeline.pts_of(start - back), stream=stream, backward=True, any_frame=False)
        out: list[np.ndarray] = []
        first: int | None = None
        last: int | None = None
        try:
            for frame in _decoded_frames(container, stream, skip_before_pts=timeline.pts_of(start)):
                index = timeline.index_of(frame.pts) if frame.pts is not None else None
                if index is None:
                    if timeline.step:
                        raise _OffTimeline
                    raise VideoDecodeError(f"decoded a frame with timestamp {frame.pts} that has no packet")
                first = index if first is None else first
                if first > start:
                    break
                if index >= start:
                    if index != start + len(out):
                        raise VideoDecodeError(f"the decoder skipped from frame {start + len(out)} to {index}")
                    out.append(_to_rgb(frame, reformatter))
                last = index
                if len(out) == stop - start:
                    return np.stack(out)
        except VideoDecodeError as exc:
            where = "before the first frame" if last is None else f"after frame {last}"
            raise VideoDecodeError(
                f"{exc} {where}; frames [{start}, {stop}) of {timeline.num_frames} were requested"
            ) from exc
        if first is not None and first <= start:
            raise VideoDecodeError(
                f"the video ended after {start + len(out)} frames though it declares {timeline.num_frames}"
            )
        if back >= start:
            raise VideoDecodeError(f"frame {start} cannot be decoded: decoding from the first keyframe skips it")
        back = max(1, 2 * back)
