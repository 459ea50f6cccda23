"""Video ingest: frames/s and peak memory of cutting a long 1080p video into clips, against a bare decode.

    .venv/bin/python benchmarks/ingest_video.py [--minutes 10] [--short-side 256] [--fps 0] [--clip-seconds 4]

Makes a 1920x1080 30 fps H.264 video of the given length (10 s of moving content encoded once, then
repeated by remuxing its packets, so making it costs seconds, while decoding it costs as much as any
1080p video), then in two child processes (so each peak RSS is its own):

- bare decode: every frame decoded by PyAV in one pass, nothing else (the baseline);
- cut: the video_folder adapter alone (decode, resize, cut into clips);
- ingest: what the pipeline does with one video work item: the adapter reads it and DatasetWriter encodes
  and writes every clip.

Prints frames/s of both, their ratio, and the peak RSS of each.

    .venv/bin/python benchmarks/ingest_video.py --fits FOLDER [--short-side 256] [--fps 0] [--aspect 16:9]

What crop and pad cost on a folder of videos of mixed sizes and orientations (e.g. the real edge-case videos
with the GR00T ego-view ones): each fit ingested in its own child process (adapter read + DatasetWriter),
printing frames/s, stored bytes per frame and the share of output pixels that are bars (pad's black).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SEGMENT_SECONDS = 10
RATE = 30


def make_long_video(path: Path, seconds: int, segment_seconds: int = SEGMENT_SECONDS,
                    height: int = 1080, width: int = 1920) -> int:
    """A ``seconds`` long video at 30 fps: one encoded segment (starting with a keyframe, no B-frames)
    muxed again and again with shifted timestamps. Returns the number of frames.

    The content is a panning texture with sensor-like noise: ~60 KB a frame (~15 Mbit/s, as a phone
    records 1080p), so decoding costs what it costs on real video (flat synthetic content decodes 8x faster).
    """
    rng = np.random.default_rng(0)
    segment_frames = min(seconds, segment_seconds) * RATE
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx // 8) % 256, (yy // 8) % 256, ((xx + yy) // 16) % 256], -1).astype(np.float32)
    texture = rng.normal(0, 12, (height, width + 6 * segment_frames, 1)).astype(np.float32)
    segment = path.with_suffix(".segment.mp4")
    with av.open(str(segment), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(segment_frames):
            image = np.roll(base, 6 * i, axis=1) + texture[:, 6 * i : 6 * i + width]
            image += rng.normal(0, 2, (height, width, 1)).astype(np.float32)
            rgb = np.clip(image, 0, 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    repeats = -(-seconds * RATE // segment_frames)
    with av.open(str(segment)) as source, av.open(str(path), "w") as out:
        in_stream = source.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        packets = [p for p in source.demux(in_stream) if p.size]
        ticks = int(segment_frames / (Fraction(RATE) * in_stream.time_base))
        for r in range(repeats):
            for packet in packets:
                packet.pts, packet.dts = packet.pts + (ticks if r else 0), packet.dts + (ticks if r else 0)
                packet.stream = out_stream
                out.mux(packet)
    segment.unlink()
    return repeats * segment_frames


def bare_decode(path: str) -> dict:
    start = time.perf_counter()
    with av.open(path) as container:
        container.streams.video[0].codec_context.thread_count = 1  # as wamdata.media.decode decodes
        frames = sum(1 for _ in container.decode(video=0))
    return {"frames": frames, "seconds": time.perf_counter() - start}


def cut_only(folder: str, options: dict) -> dict:
    """The adapter alone: decode, resize and cut into clips, no encoding or writing."""
    from wamdata.sources import Rejected, adapter_for

    start = time.perf_counter()
    adapter = adapter_for("video_folder", folder, **options)
    clips = steps = 0
    for item in adapter.work_items():
        for result in adapter.read(item):
            if isinstance(result, Rejected):
                raise RuntimeError(result.reason)
            clips, steps = clips + 1, steps + result.num_steps
    return {"clips": clips, "steps": steps, "seconds": time.perf_counter() - start}


def ingest(folder: str, out: str, options: dict) -> dict:
    from wamdata.format.writer import DatasetWriter
    from wamdata.sources import Rejected, adapter_for

    start = time.perf_counter()
    adapter = adapter_for("video_folder", folder, **options)
    clips = steps = 0
    with DatasetWriter(out, "bench", adapter.specs()) as writer:
        for item in adapter.work_items():
            for result in adapter.read(item):
                if isinstance(result, Rejected):
                    raise RuntimeError(result.reason)
                writer.write(result)
                clips, steps = clips + 1, steps + result.num_steps
        writer.close()
    return {"clips": clips, "steps": steps, "seconds": time.perf_counter() - start}


def fit_cost(folder: str, out: str, options: dict) -> dict:
    """One fit's ingest of a folder: frames written, shard bytes, seconds, and how many output pixels are
    bars (pad's black, outside the picture) rather than picture."""
    from wamdata.format.writer import DatasetWriter
    from wamdata.sources import Rejected, adapter_for

    start = time.perf_counter()
    adapter = adapter_for("video_folder", folder, **options)
    frames = 0
    bars = 0.0
    fit = adapter.frame_format.fit
    with DatasetWriter(out, "bench", adapter.specs()) as writer:
        for item in adapter.work_items():
            try:
                results = list(adapter.read(item))
            except ValueError:  # a video that cannot be opened: the pipeline would quarantine it
                continue
            for result in results:
                if isinstance(result, Rejected):
                    continue
                writer.write(result)
                info = adapter.format_of(item.key)
                _, (_, _, height, width) = fit.boxes(info.height, info.width)
                frames += result.num_steps
                bars += result.num_steps * (1 - height * width / (fit.height * fit.width))
        writer.close()
    seconds = time.perf_counter() - start
    shard_bytes = sum(p.stat().st_size for p in Path(out).rglob("*.tar"))
    return {"frames": frames, "bytes": shard_bytes, "seconds": seconds, "bars": bars / frames}


def compare_fits(folder: str, options: dict) -> None:
    print(f"{'fit':<6}{'frames':>8}{'frames/s':>10}{'bytes/frame':>13}{'bars':>7}  options: {options}")
    with tempfile.TemporaryDirectory() as tmp:
        for fit in ("crop", "pad"):
            result, _ = in_child("fit_cost", folder, str(Path(tmp) / fit), {**options, "fit": fit})
            spec = json.loads((Path(tmp) / fit / "dataset.json").read_text())["sources"]["videos"]
            size = f"{spec['cameras']['rgb']['width']}x{spec['cameras']['rgb']['height']}"
            print(f"{fit:<6}{result['frames']:>8}{result['frames'] / result['seconds']:>10.0f}"
                  f"{result['bytes'] / result['frames']:>13.0f}{result['bars']:>7.1%}  {size}")


def in_child(function: str, *args: object) -> tuple[dict, float]:
    """Run ``function(*args)`` of this file in a new process: (its result, its peak RSS in GB)."""
    # The peak is the child's own VmHWM: getrusage's ru_maxrss survives exec on Linux, so a child of a large
    # process (pytest after many tests) would report its parent's peak at fork time.
    code = (
        f"import json, re, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import ingest_video; "
        f"result = ingest_video.{function}(*json.loads(sys.argv[1])); "
        "status = open('/proc/self/status').read(); "
        "result['peak_rss_kib'] = int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)); print(json.dumps(result))"
    )
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result, result["peak_rss_kib"] / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--fps", type=float, default=0.0, help="output rate; 0 keeps 30")
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--fits", metavar="FOLDER", help="compare fit: crop and fit: pad on this folder of videos")
    parser.add_argument("--aspect", help="with --fits: the clips' aspect ratio (default: the most common)")
    args = parser.parse_args()
    if args.fits:
        options = {"short_side": args.short_side, "clip_seconds": args.clip_seconds}
        options.update({"fps": args.fps} if args.fps else {})
        options.update({"aspect": args.aspect} if args.aspect else {})
        compare_fits(args.fits, options)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        video = folder / "long.mp4"
        made = time.perf_counter()
        frames = make_long_video(video, int(args.minutes * 60))
        print(f"video: {frames} frames 1920x1080 at {RATE} fps ({frames / RATE / 60:.1f} min), "
              f"{video.stat().st_size / 1e6:.0f} MB, made in {time.perf_counter() - made:.0f} s")
        options = {"short_side": args.short_side, "clip_seconds": args.clip_seconds}
        if args.fps:
            options["fps"] = args.fps
        ingested, ingest_rss = in_child("ingest", str(folder), str(Path(tmp) / "out"), options)
        cut, cut_rss = in_child("cut_only", str(folder), options)
        decoded, decode_rss = in_child("bare_decode", str(video))
    decode_fps = decoded["frames"] / decoded["seconds"]
    print(f"{'run':<14}{'frames/s':>10}{'ratio':>8}{'peak RSS':>11}  notes")
    print(f"{'bare decode':<14}{decode_fps:>10.0f}{1.0:>7.2f}x{decode_rss:>9.2f} GB  PyAV, one thread, no conversion")
    for name, run, rss, note in (
        ("cut", cut, cut_rss, "decode + resize + cut into clips, nothing encoded"),
        ("ingest", ingested, ingest_rss, "cut + encode (x264, one thread) + write shards"),
    ):
        fps = frames / run["seconds"]
        print(f"{name:<14}{fps:>10.0f}{fps / decode_fps:>7.2f}x{rss:>9.2f} GB  {note}; {run['clips']} clips, "
              f"{run['steps']} steps")
    print(f"options: {options}")


if __name__ == "__main__":
    main()
