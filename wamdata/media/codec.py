"""How episode cameras are stored: the codec settings (``VideoCodec``), the deterministic encoder, and PSNR.

An episode camera is one in-memory blob: H.264 in MP4 (``VideoCodec("h264")``) or per-frame JPEG, i.e.
MJPEG in AVI (``VideoCodec("jpeg")``). Encoding is deterministic (same frames, same bytes, in every process),
so a re-run of an ingest job gives byte-identical shards and content hashes.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, fields
from fractions import Fraction

import av
import numpy as np
from av import VideoFrame

CODEC_NAMES = ("h264", "jpeg")
PIX_FMTS = ("yuv420p", "yuv444p")


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


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays of the same shape (inf when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))



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
