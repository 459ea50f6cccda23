"""Ingest throughput against a bare read of the same source, in one run, as a ratio.

    RLDS:  the real bridge debug tfrecord, copied into --copies shards of one split (one work item each);
           baseline: iterate every episode with tfds (JPEG decode included), as a trainer's loader would.
    HDF5:  the toy robot written as a robomimic HDF5 file of --episodes demos (64x64 camera, state, action);
           baseline: h5py reads every dataset of every demo.
    video: --video-seconds of 1920x1080 30 fps H.264 in a folder, ingested by `video_folder` into 4 s clips at
           short side 256; baseline: decode every frame with PyAV (one thread, as wamdata decodes).
           (benchmarks/ingest_video.py adds peak RSS and a 10-minute video.)

Ingest = the whole `wamdata ingest` pipeline (read, validate, encode video, stats, shards, episodes.parquet),
Ray already started (its start-up is reported apart). frames = steps x cameras actually stored.

    .venv/bin/python benchmarks/ingest.py [--copies 32] [--episodes 800] [--video-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import h5py
from ingest_video import bare_decode, make_long_video

from wamdata.cluster import RaySession
from wamdata.format.reader import Dataset
from wamdata.ingest import ingest
from wamdata.toy.export import write_robomimic_hdf5
from wamdata.toy.world import generate_episode

BRIDGE = Path(__file__).resolve().parents[2] / "shared/data/real/oxe_bridge_debug/bridge_dataset/1.0.0"


def replicate_bridge(target: Path, copies: int) -> Path:
    """The bridge debug split 'train' as `copies` tfrecord shards (dataset_info.json updated to match)."""
    target.mkdir(parents=True)
    source = BRIDGE / "bridge_dataset-train.tfrecord-00000-of-00001"
    for i in range(copies):
        shutil.copy(source, target / f"bridge_dataset-train.tfrecord-{i:05d}-of-{copies:05d}")
    shutil.copy(BRIDGE / "features.json", target)
    info = json.loads((BRIDGE / "dataset_info.json").read_text())
    info["splits"] = [dict(s, shardLengths=[s["shardLengths"][0]] * copies) for s in info["splits"]
                      if s["name"] == "train"]
    (target / "dataset_info.json").write_text(json.dumps(info))
    return target


def bare_tfds(directory: Path) -> int:
    import tensorflow_datasets as tfds

    frames = 0
    builder = tfds.builder_from_directory(str(directory))
    for episode in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)):
        for step in episode["steps"]:
            frames += sum(1 for key, image in step["observation"].items() if key.startswith("image") and image.any())
    return frames


def bare_h5py(path: Path) -> int:
    """Read every dataset of every demo into memory; count the camera frames."""
    frames = 0
    with h5py.File(path, "r") as f:
        for demo in f["data"].values():
            for name in ("actions", "states", "rewards", "dones"):
                demo[name][()]
            for name in demo["obs"]:
                data = demo["obs"][name][()]
                frames += len(data) if data.ndim == 4 else 0
    return frames


def stored_frames(root: Path) -> int:
    table = Dataset.open(root).episodes
    return sum(n * len(c) for n, c in zip(table.column("num_steps").to_pylist(), table.column("cameras").to_pylist(),
                                          strict=True))


def measure(name: str, format: str, source: Path, baseline, work: Path, **options: object) -> None:  # noqa: ANN001
    started = time.perf_counter()
    baseline_frames = baseline(source)
    baseline_s = time.perf_counter() - started
    started = time.perf_counter()
    ingest(format, str(source), work / f"{name}_out", progress=False, **options)
    ingest_s = time.perf_counter() - started
    frames = stored_frames(work / f"{name}_out")
    assert frames == baseline_frames, (frames, baseline_frames)
    bare_rate, ingest_rate = baseline_frames / baseline_s, frames / ingest_s
    print(f"{name:<6} {frames:>7} frames   bare read {bare_rate:>8.0f} frames/s ({baseline_s:5.1f} s)   "
          f"ingest {ingest_rate:>7.0f} frames/s ({ingest_s:5.1f} s)   ratio {ingest_rate / bare_rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=32, help="bridge tfrecord shards (25 episodes each)")
    parser.add_argument("--episodes", type=int, default=800, help="toy robot demos in the HDF5 file")
    parser.add_argument("--video-seconds", type=int, default=60, help="length of the 1080p video (a multiple of 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rlds = replicate_bridge(work / "bridge_dataset" / "1.0.0", args.copies)
        episodes = [generate_episode(seed, image_size=64, max_steps=64) for seed in range(args.episodes)]
        hdf5 = write_robomimic_hdf5(episodes, work / "toy_robot.hdf5", fps=10.0)
        videos = work / "videos"
        videos.mkdir()
        make_long_video(videos / "long.mp4", args.video_seconds)
        started = time.perf_counter()
        with RaySession(None):
            print(f"ray start-up: {time.perf_counter() - started:.1f} s (not counted below)")
            measure("rlds", "oxe_rlds", rlds, bare_tfds, work)
            measure("hdf5", "robomimic", hdf5, bare_h5py, work)
            measure("video", "video_folder", videos, lambda folder: bare_decode(str(folder / "long.mp4"))["frames"],
                    work, short_side=256, clip_seconds=4.0)


if __name__ == "__main__":
    main()
