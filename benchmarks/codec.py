"""Benchmark the episode video codecs: size, encode speed, random-clip decode speed and quality.

    python benchmarks/codec.py [--quick]

For each video set and codec it prints bytes per frame, encode frames/s, random 16-frame clips/s decoded
from the in-memory blob (a new decoder per clip, as a data loader does) with PyAV (what wamdata decodes
with) and, when it is installed (``pip install decord``; not a wamdata dependency), with decord as a peer,
and PSNR against the source frames. Rates are also given relative to h264 GOP 8 decoded with PyAV in the same
run, since absolute numbers on a shared machine drift from run to run.

Video sets: (1) ToyWorld "robot" episodes (64x64) concatenated into one video; (2) the real GR00T
PickNPlace ego-view episodes (256x256, 20 fps, decoded from their h264 and re-encoded), one blob each;
(3) a real hand-held kitchen clip (426x240, 30 fps, fast camera motion), standing in for human video.

The row "jpeg-files (Pillow)" is the layout the "jpeg" codec was chosen over: separate JPEG files (Pillow
quality 90, about the size of MJPEG qscale 2) with an offset index, decoded with Pillow. It is measured
here only, to show why MJPEG in AVI decoded by PyAV was kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout, without installing the package

from wamdata.media.codec import VideoCodec, encode_video, psnr  # noqa: E402
from wamdata.media.decode import decode_frames  # noqa: E402
from wamdata.toy.world import generate_episode  # noqa: E402

REAL_DATA = Path(os.environ.get("WAMDATA_REAL_DATA", REPO.parent / "shared/data/real"))
GR00T_VIDEOS = REAL_DATA / "lerobot_gr00t_picknplace/robot_sim.PickNPlace/videos/chunk-000/observation.images.ego_view"
HUMAN_VIDEO = REAL_DATA / "video_edge_cases/flipping_a_pancake.mkv"
CLIP = 16
CODECS = {
    "h264 GOP 1": VideoCodec("h264", gop=1),
    "h264 GOP 8": VideoCodec("h264", gop=8),
    "h264 GOP 16": VideoCodec("h264", gop=16),
    "h264 GOP 32": VideoCodec("h264", gop=32),
    "h264 GOP 8 yuv444p": VideoCodec("h264", gop=8, pix_fmt="yuv444p"),
    "jpeg": VideoCodec("jpeg"),
    "jpeg yuv444p": VideoCodec("jpeg", pix_fmt="yuv444p"),
}
BASELINE = ("h264 GOP 8", "PyAV")
Decoder = Callable[[object, int], np.ndarray]


def toyworld_videos(num_episodes: int) -> tuple[str, list[np.ndarray], float]:
    episodes = [
        generate_episode(seed, appearance="robot", image_size=64, max_steps=64).frames for seed in range(num_episodes)
    ]
    frames = np.concatenate(episodes)
    return f"ToyWorld robot 64x64, {num_episodes} episodes in one video ({len(frames)} frames)", [frames], 20.0


def gr00t_videos(num_episodes: int) -> tuple[str, list[np.ndarray], float]:
    paths = sorted(GR00T_VIDEOS.glob("episode_*.mp4"))[:num_episodes]
    videos = [decode_frames(p) for p in paths]
    total = sum(len(v) for v in videos)
    return f"GR00T PickNPlace ego view 256x256, {len(videos)} episode videos ({total} frames)", videos, 20.0


def human_video() -> tuple[str, list[np.ndarray], float]:
    frames = decode_frames(HUMAN_VIDEO)
    return f"Hand-held kitchen video 426x240 ({len(frames)} frames)", [frames], 30.0


def encode_jpeg_files(frames: np.ndarray) -> list[bytes]:
    files = []
    for rgb in frames:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
        files.append(buf.getvalue())
    return files


def decode_jpeg_files(files: list[bytes], start: int, stop: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files[start:stop]])


def clips_per_second(decode: Decoder, blobs: list, lengths: list[int], num_clips: int, rounds: int) -> float:
    """Best of `rounds` over the same random (video, start) clips: the least disturbed measurement."""
    rng = random.Random(1)
    picks = []
    for _ in range(num_clips):
        v = rng.randrange(len(blobs))
        picks.append((blobs[v], rng.randrange(lengths[v] - CLIP + 1)))
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for blob, start in picks:
            assert decode(blob, start).shape[0] == CLIP
        best = max(best, num_clips / (time.perf_counter() - t0))
    return best


def decord_clip(blob: bytes, start: int) -> np.ndarray:
    """A clip decoded by decord the way a data loader would use it: a new reader per clip, one thread."""
    import decord

    reader = decord.VideoReader(io.BytesIO(blob), ctx=decord.cpu(0), num_threads=1)
    return reader.get_batch(list(range(start, start + CLIP))).asnumpy()


def bench_set(label: str, videos: list[np.ndarray], fps: float, num_clips: int, rounds: int) -> None:
    lengths = [len(v) for v in videos]
    source = np.concatenate(videos)
    rows = []
    # (name, encode one video, clip decoders by backend, decode a whole video)
    variants = [
        (
            name,
            lambda v, codec=codec: encode_video(v, fps, codec),
            {
                **({"decord": decord_clip} if importlib.util.find_spec("decord") else {}),
                "PyAV": lambda b, s: decode_frames(b, s, s + CLIP),
            },
            decode_frames,
        )
        for name, codec in CODECS.items()
    ]
    variants.append(
        (
            "jpeg-files (Pillow)",
            encode_jpeg_files,
            {"Pillow": lambda files, s: decode_jpeg_files(files, s, s + CLIP)},
            lambda files: decode_jpeg_files(files, 0, len(files)),
        )
    )
    for name, encode, decoders, decode_all in variants:
        t0 = time.perf_counter()
        blobs = [encode(v) for v in videos]
        encode_fps = len(source) / (time.perf_counter() - t0)
        size = sum(len(b) if isinstance(b, bytes) else sum(map(len, b)) for b in blobs)
        quality = psnr(source, np.concatenate([decode_all(b) for b in blobs]))
        rates = {
            backend: clips_per_second(decode, blobs, lengths, num_clips, rounds) for backend, decode in decoders.items()
        }
        rows.append((name, size / len(source), encode_fps, rates, quality))

    base = next(r[3] for r in rows if r[0] == BASELINE[0])[BASELINE[1]]
    print(f"\n### {label}\n")
    print(
        f"{num_clips} random {CLIP}-frame clips from in-memory blobs, best of {rounds} rounds; "
        f"(x) = relative to {BASELINE[0]} with {BASELINE[1]} ({base:.0f} clips/s)\n"
    )
    print("| codec | bytes/frame | encode frames/s | clips/s decord | clips/s PyAV | clips/s Pillow | PSNR dB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, bytes_per_frame, encode_fps, rates, quality in rows:
        cells = [
            f"{rates[b]:.0f} ({rates[b] / base:.2f}x)" if b in rates else "-" for b in ("decord", "PyAV", "Pillow")
        ]
        print(f"| {name} | {bytes_per_frame:,.0f} | {encode_fps:,.0f} | {' | '.join(cells)} | {quality:.2f} |")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one GR00T episode and fewer clips")
    args = parser.parse_args()
    num_clips, rounds = (20, 2) if args.quick else (40, 3)
    print(f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}")
    bench_set(*toyworld_videos(20), num_clips, rounds)
    bench_set(*gr00t_videos(1 if args.quick else 3), num_clips, rounds)
    bench_set(*human_video(), num_clips, rounds)


if __name__ == "__main__":
    main()
