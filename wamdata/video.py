"""Video encoding and frame-accurate range decoding for episode cameras.

An episode camera is stored as one in-memory blob: H.264 in MP4 (``VideoCodec("h264")``) or per-frame
JPEG, i.e. MJPEG in AVI (``VideoCodec("jpeg")``). Trainers read random clips out of these blobs, so
``decode_frames`` is built for short ranges: it seeks to the keyframe before ``start``, decodes forward
and maps each decoded frame to its index by timestamp, so the result is exactly frames ``[start, stop)``
in presentation order whatever the GOP, B-frame reordering or negative DTS of the file.

Encoding is deterministic (same frames, same bytes, in every process), so a re-run of an ingest job
gives byte-identical shards and content hashes.

Frame indices are presentation indices. For containers whose declared frame count and duration agree
with the declared rate (MP4/MOV/AVI written by a normal muxer), indices come from
``(pts - start_time) / frame_duration`` without reading the file; other inputs (Matroska, variable frame
rate) are indexed by scanning the packet timestamps first. Frames of a video with a rotation display
matrix are returned rotated, as decord and players show them.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from fractions import Fraction

import av
import numpy as np
from av import VideoFrame, VideoStream
from av.container import InputContainer
from av.video.reformatter import VideoReformatter

CODEC_NAMES = ("h264", "jpeg")
PIX_FMTS = ("yuv420p", "yuv444p")
BACKENDS = ("auto", "decord", "pyav")


class VideoDecodeError(ValueError):
    """The input is not a decodable video or is corrupt where the requested frames lie."""


@dataclass(frozen=True)
class VideoCodec:
    """How a camera stream is encoded; stored as ``to_json()`` in the dataset metadata.

    ``gop`` and ``crf`` apply to "h264"; ``jpeg_qscale`` (FFmpeg's MJPEG quantiser scale, 1 best to 31)
    to "jpeg"; ``pix_fmt`` to both (4:2:0 or 4:4:4 chroma).
    """

    # The defaults are DEFAULT_CODEC (see there for why).
    name: str = "h264"
    gop: int = 16
    # crf 20 re-encodes the five real GR00T ego-view videos at 40.6-42.1 dB (worst frame 38.2 dB), a 3+ dB
    # margin over the 35 dB floor on every frame; crf 23 gives 38.8-39.8 dB (worst frame 36.2 dB).
    crf: int = 20
    pix_fmt: str = "yuv420p"
    # qscale 2: GR00T at 39.6 dB; 3 gives 36.8 dB, too close to the 35 dB floor.
    jpeg_qscale: int = 2

    def __post_init__(self) -> None:
        if self.name not in CODEC_NAMES:
            raise ValueError(f"codec name must be one of {CODEC_NAMES}, got {self.name!r}")
        if self.pix_fmt not in PIX_FMTS:
            raise ValueError(f"pix_fmt must be one of {PIX_FMTS}, got {self.pix_fmt!r}")
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if not 1 <= self.jpeg_qscale <= 31:
            raise ValueError(f"jpeg_qscale must be in [1, 31], got {self.jpeg_qscale}")

    @property
    def extension(self) -> str:
        """File extension of an encoded blob (shard member names use it)."""
        return "mp4" if self.name == "h264" else "avi"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> VideoCodec:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown VideoCodec fields {sorted(unknown)} in {d}")
        return cls(**d)


# From benchmarks/codec.py (2-core CPU; 40 random 16-frame clips from in-memory blobs, PyAV; ratios to GOP 8 in
# the same run) on ToyWorld 64x64, the real GR00T 256x256 robot camera and a real 426x240 hand-held video:
# - GOP 16 decodes clips at 0.94-0.98x the speed of GOP 8 and is 7-29% smaller. GOP 32 is smaller still (GR00T:
#   53% of GOP 8) but only 0.80-0.85x as fast on ToyWorld and the hand-held video. GOP 1 is 1.7-2.9x larger and
#   no faster (0.66-1.05x): its I-frames cost more to decode than P-frames.
# - yuv420p: 4:4:4 decodes clips at 0.63-0.84x the speed for <= 0.3 dB more on the real videos. It pays on
#   flat-coloured renders: ToyWorld is 35.2 dB in 4:2:0 (chroma subsampling alone caps it near 35.5 dB) and
#   45.6 dB in 4:4:4 at about the same size, so use VideoCodec(pix_fmt="yuv444p") for those.
# - "jpeg" (MJPEG) decodes clips 1.45-1.9x faster than GOP 8 but is 4-7x larger (GR00T: 16 KB vs 2.2 KB a
#   frame): that many more shard bytes to store and to stream to every trainer.
DEFAULT_CODEC = VideoCodec(name="h264", gop=16, crf=20, pix_fmt="yuv420p")

def codec_with(overrides: dict | None) -> VideoCodec:
    """DEFAULT_CODEC with the given fields changed (a source's ``video:`` option, e.g. {"pix_fmt": "yuv444p"})."""
    return VideoCodec.from_json({**DEFAULT_CODEC.to_json(), **(overrides or {})})


# Small cameras (OXE's 64x64 bridge JPEGs) lose most to 4:2:0 chroma: re-encoded at the default they reach only
# 33.5 dB on their worst episode; 4:4:4 at crf 18 gives 36.4 dB for a few hundred bytes a frame.
SMALL_FRAME_PIXELS = 128 * 128
SMALL_FRAME_CODEC = VideoCodec(name="h264", gop=16, crf=18, pix_fmt="yuv444p")


def codec_for_frames(height: int, width: int) -> VideoCodec:
    """The codec ingest stores a camera of this size with."""
    return SMALL_FRAME_CODEC if height * width <= SMALL_FRAME_PIXELS else DEFAULT_CODEC


# "auto" decodes with PyAV: in benchmarks/codec.py decord decodes random clips from in-memory blobs at
# only 0.3-0.9x PyAV's speed for every codec and video (its VideoReader reads the whole file to build an
# index before the first frame, and copies in-memory input once more), and decord 0.6 cannot read AV1.
_AUTO_BACKEND = "pyav"


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int
    codec: str


VideoSource = bytes | str | os.PathLike


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays of the same shape (inf when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


# ---------------------------------------------------------------------------------------------- encoding


def encode_video(frames: np.ndarray, fps: float, codec: VideoCodec = DEFAULT_CODEC) -> bytes:
    """Encode uint8 RGB frames (T, H, W, 3) into one in-memory file: MP4 for "h264", AVI for "jpeg".

    The output is byte-identical for identical input and codec in every process: the encoder runs one
    thread (x264's output depends on its thread count) without mbtree (see below), and muxer and encoder
    are bitexact, so no library version or creation time is written.

    H.264 with yuv420p needs even H and W (chroma is subsampled 2x2); odd sizes raise ValueError rather
    than being padded, because padding would make the decoded frames a different shape from the ones
    given. Use yuv444p or "jpeg" for odd sizes.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (T>0, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    _, height, width, _ = frames.shape
    if codec.name == "h264":
        if codec.pix_fmt == "yuv420p" and (height % 2 or width % 2):
            raise ValueError(
                f"h264 with yuv420p needs even height and width, got {height}x{width}; "
                "crop or pad the frames, or use pix_fmt='yuv444p' or the 'jpeg' codec"
            )
        encoder, pix_fmt = "libx264", codec.pix_fmt
        # A fixed keyframe interval (no scene-cut keyframes) bounds the frames decoded before a clip.
        # mbtree is off because with it x264 (core 165, one thread) gives different bytes from run to run
        # on some frame sizes, as if it read uninitialised memory: seen on 64x64 ToyWorld, 160x96 and the
        # real 426x240 kitchen video, not at 128x128 or 256x256. Off costs 5-7% bytes on the real videos.
        gop = f"keyint={codec.gop}:min-keyint={codec.gop}:scenecut=0"
        options = {"crf": str(codec.crf), "x264-params": f"{gop}:mbtree=0"}
    else:
        # MJPEG takes full-range ("j") YUV; the decoder reports it back and RGB conversion honours it.
        encoder, pix_fmt, options = "mjpeg", codec.pix_fmt.replace("yuv", "yuvj"), {}
    buf = io.BytesIO()
    with av.open(buf, "w", format=codec.extension, options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.thread_count = 1
        if codec.name == "jpeg":
            stream.codec_context.qmin = stream.codec_context.qmax = codec.jpeg_qscale
        stream.codec_context.options = {"flags": "+bitexact", **options}
        for i, rgb in enumerate(frames):
            frame = VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- decoding


def _require_file(video: VideoSource) -> None:
    # A missing file is the caller's mistake, not a corrupt video: keep it a FileNotFoundError for both backends.
    if not isinstance(video, bytes) and not os.path.isfile(video):
        raise FileNotFoundError(f"no video file at {os.fspath(video)}")


def _check_range(start: int, stop: int | None, num_frames: int) -> int:
    stop = num_frames if stop is None else stop
    if not 0 <= start < stop <= num_frames:
        raise ValueError(f"frame range [{start}, {stop}) is empty or outside the video's {num_frames} frames")
    return stop


def decode_frames(video: VideoSource, start: int = 0, stop: int | None = None, backend: str = "auto") -> np.ndarray:
    """Decode frames ``[start, stop)`` (presentation order) as uint8 RGB (stop - start, H, W, 3).

    ``video`` is the encoded bytes or a path; ``stop`` None means the end. ``backend``: "pyav",
    "decord", or "auto", which is PyAV, the fastest in benchmarks/codec.py for every codec.

    An empty range or one outside the video raises ValueError naming the range and the frame count.
    Corrupt input raises VideoDecodeError, but only when the requested frames cannot be decoded: a clip
    that lies before the point where decoding fails is returned (with PyAV; decord decodes ahead and
    fails earlier), and a full-range decode of such a file raises, which is how a validator finds it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _require_file(video)
    if (_AUTO_BACKEND if backend == "auto" else backend) == "decord":
        return _decode_decord(video, start, stop)
    return _decode_pyav(video, start, stop)


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


# ---- decord


def _decode_decord(video: VideoSource, start: int, stop: int | None) -> np.ndarray:
    # Imported here: decord has no wheels for some platforms (macOS arm64), and only this path needs it.
    import decord

    # decord takes any object with .read() as in-memory data (it copies it into its own buffer), but
    # treats bytes as a file name.
    source = io.BytesIO(video) if isinstance(video, bytes) else os.fspath(video)
    try:
        reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=1)  # as for PyAV, see there
        stop = _check_range(start, stop, len(reader))
        return reader.get_batch(list(range(start, stop))).asnumpy()
    # decord reports failures as DECORDError, RuntimeError (no reader) or AssertionError (no frames).
    except (decord.DECORDError, RuntimeError, AssertionError) as exc:
        # Drop decord's "[hh:mm:ss] /source/file.cc:123: " prefixes.
        message = re.sub(r"\[[\d:]+\] \S+:\d+: ", "", str(exc)).strip() or type(exc).__name__
        raise VideoDecodeError(f"decord cannot decode the video: {message}") from exc


# ---- PyAV


def _open_container(video: VideoSource) -> InputContainer:
    try:
        container = av.open(io.BytesIO(video) if isinstance(video, bytes) else os.fspath(video))
    except av.FFmpegError as exc:
        raise VideoDecodeError(f"not a readable video container: {exc}") from exc
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


def _to_rgb(frame: VideoFrame, reformatter: VideoReformatter, short_side: int | None = None) -> np.ndarray:
    # A reformatter shared across a clip's frames keeps its swscale context (frame.to_ndarray builds a
    # new one, with a thread pool, per frame: 5-20x slower on small frames). Resizing happens in the same
    # swscale call, before rotation: converting a 1080p frame to RGB and then shrinking it costs ~3x more.
    if short_side is None:
        rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    else:
        width, height = resized_size(frame.width, frame.height, short_side)
        rgb = reformatter.reformat(
            frame, format="rgb24", width=width, height=height, interpolation="AREA", threads=1
        ).to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, k=frame.rotation // 90)) if frame.rotation else rgb


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so the shorter side is ``short_side``, keeping the aspect ratio; both even,
    as H.264 in 4:2:0 needs."""
    scale = short_side / min(width, height)
    return 2 * max(1, round(width * scale / 2)), 2 * max(1, round(height * scale / 2))


@dataclass
class StreamFrame:
    """One frame of a sequential decoding pass: its presentation index, its time in seconds after the
    stream's start, and its RGB image, converted (and resized, rotated upright) only when asked for, so a
    pass that keeps one frame in three converts one in three."""

    index: int
    time: float
    _frame: VideoFrame
    _reformatter: VideoReformatter
    _short_side: int | None

    def rgb(self) -> np.ndarray:
        return _to_rgb(self._frame, self._reformatter, self._short_side)


def iter_frames(video: VideoSource, short_side: int | None = None) -> Iterator[StreamFrame]:
    """Every frame of a video in presentation order, decoded in one forward pass that holds one frame at
    a time, so a video of any length streams in constant memory.

    Times come from each frame's timestamp (variable frame rate streams keep their real timing);
    ``short_side`` resizes keeping the aspect ratio (see ``resized_size``); rotated videos come out
    upright. A decode error is raised as VideoDecodeError after the frames decoded before it.
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
            yield StreamFrame(index, time, frame, reformatter, short_side)


class _OffTimeline(Exception):
    """A decoded timestamp is not on the constant-rate grid, so the stream must be indexed by scanning."""


def _decode_pyav(video: VideoSource, start: int, stop: int | None) -> np.ndarray:
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
