"""The toy world written in users' native formats, so the demo (and the tests) ingest it the way real data
comes: the robot as a LeRobot v2.1 dataset and a robomimic HDF5 file, the human hand as EPIC-KITCHENS-100
videos with narrated segments.

Both writers follow the published layouts (LeRobot's meta/info.json features, episodes.jsonl and
tasks.jsonl, one parquet and one mp4 per episode; robomimic's data/demo_i/{obs, actions, rewards, dones,
states} with env_args), because nothing in those libraries writes them without their simulators.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wamdata.media.codec import VideoCodec, codec_with, encode_video
from wamdata.sources.epic_kitchens import EPIC_100_COLUMNS, format_timestamp
from wamdata.toy import world as toyworld
from wamdata.toy.world import ToyEpisode

LEROBOT_CAMERA = "observation.images.front"


def _feature(dtype: str, shape: list[int], names: list[str] | None = None) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "names": names}


def write_lerobot_v21(episodes: list[ToyEpisode], root: Path, fps: float, codec: VideoCodec,
                      robot_type: str = "toy_pusher") -> Path:
    """A LeRobot v2.1 dataset: data/chunk-000/episode_NNNNNN.parquet, videos/chunk-000/<key>/episode_NNNNNN.mp4."""
    root = Path(root)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(ep.language for ep in episodes))
    size = episodes[0].frames.shape[1]
    index = 0
    episode_rows = []
    for episode_index, ep in enumerate(episodes):
        steps = len(ep.actions)
        table = pa.table({
            "observation.state": pa.array(ep.states.astype(np.float32).tolist(), pa.list_(pa.float32())),
            "action": pa.array(ep.actions.astype(np.float32).tolist(), pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(steps, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(steps, dtype=np.int64)),
            "episode_index": pa.array(np.full(steps, episode_index, dtype=np.int64)),
            "index": pa.array(np.arange(index, index + steps, dtype=np.int64)),
            "task_index": pa.array(np.full(steps, tasks.index(ep.language), dtype=np.int64)),
            "next.success": pa.array(np.arange(steps) == steps - 1 if ep.success else np.zeros(steps, bool)),
        })
        data = root / "data" / "chunk-000" / f"episode_{episode_index:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, data)
        video = root / "videos" / "chunk-000" / LEROBOT_CAMERA / f"episode_{episode_index:06d}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(encode_video(ep.frames, fps, codec))
        episode_rows.append({"episode_index": episode_index, "tasks": [ep.language], "length": steps})
        index += steps
    info = {
        "codebase_version": "v2.1", "robot_type": robot_type, "fps": fps,
        "total_episodes": len(episodes), "total_frames": index, "total_tasks": len(tasks),
        "total_videos": len(episodes), "total_chunks": 1, "chunks_size": 1000,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            LEROBOT_CAMERA: {**_feature("video", [size, size, 3], ["height", "width", "channel"]),
                             "info": {"video.fps": fps, "video.codec": "h264"}},
            "observation.state": _feature("float32", [toyworld.STATE_DIM], [s["name"] for s in toyworld.STATE_SLICES]),
            "action": _feature("float32", [toyworld.ACTION_DIM], [s["name"] for s in toyworld.ACTION_SLICES]),
            "timestamp": _feature("float32", [1]),
            "frame_index": _feature("int64", [1]),
            "episode_index": _feature("int64", [1]),
            "index": _feature("int64", [1]),
            "task_index": _feature("int64", [1]),
            "next.success": _feature("bool", [1]),
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in episode_rows))
    (root / "meta" / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks)))
    return root


def write_robomimic_hdf5(episodes: list[ToyEpisode], path: Path, fps: float) -> Path:
    """A robomimic-converted HDF5 file: data/demo_i/{obs/front_image, obs/<state slices>, actions, rewards,
    dones, states}, with env_args naming the toy world."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "ToyPush", "type": 0, "env_kwargs": {
            "robots": ["toy_pusher"], "control_freq": fps, "controller_configs": {"type": "VELOCITY_2D"}}})
        data.attrs["total"] = sum(len(ep.actions) for ep in episodes)
        for i, ep in enumerate(episodes):
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = len(ep.actions)
            demo.attrs["ep_meta"] = json.dumps({"lang": ep.language, "seed": ep.seed})
            demo["actions"] = ep.actions
            demo["states"] = ep.states
            demo["rewards"] = (np.arange(len(ep.actions)) == len(ep.actions) - 1).astype(np.float64) * ep.success
            demo["dones"] = (np.arange(len(ep.actions)) == len(ep.actions) - 1).astype(np.int64)
            demo["obs/front_image"] = ep.frames
            for s in toyworld.STATE_SLICES:
                demo[f"obs/{s['name']}"] = ep.states[:, s["start"]:s["stop"]]
    return path


def export_epic_kitchens(
    out: str | Path,
    videos: int = 4,
    segments_per_video: int = 5,
    first_seed: int = 200_000,
    image_size: int = 64,
    max_steps: int = 64,
    noise: float = 0.1,
    gap_frames: int = 5,
    fps: float = 10.0,
) -> list[dict[str, str]]:
    """The human-hand rendering written as EPIC-KITCHENS-100 would hold it: ``P00/videos/P00_NN.MP4``, each
    video one episode after another (seeds from ``first_seed``) with ``gap_frames`` of the last frame
    between them, plus ``EPIC_100_train.csv`` (one narrated segment per episode, 1-based inclusive frame
    numbers, no actions) and ``EPIC_100_video_info.csv``. Returns the annotation rows."""
    out = Path(out)
    (out / "P00" / "videos").mkdir(parents=True, exist_ok=True)
    codec = codec_with({"pix_fmt": "yuv444p", "crf": 12})  # a near-lossless "camera" original
    rows, infos = [], []
    seed = first_seed
    for v in range(videos):
        video_id = f"P00_{v + 1:02d}"
        frames: list[np.ndarray] = []
        for s in range(segments_per_video):
            episode = toyworld.generate_episode(seed, "human_hand", image_size, max_steps, noise)
            start = len(frames)
            frames.extend(episode.frames)
            stop = len(frames)
            rows.append({
                "narration_id": f"{video_id}_{s}", "participant_id": "P00", "video_id": video_id,
                "narration_timestamp": format_timestamp(start / fps),
                "start_timestamp": format_timestamp(start / fps), "stop_timestamp": format_timestamp(stop / fps),
                "start_frame": str(start + 1), "stop_frame": str(stop), "narration": episode.language,
                "verb": "push", "verb_class": "0", "noun": "block", "noun_class": "0",
                "all_nouns": "['block', 'target']", "all_noun_classes": "[0, 1]",
            })
            frames.extend([episode.frames[-1]] * gap_frames)
            seed += 1
        (out / "P00" / "videos" / f"{video_id}.MP4").write_bytes(encode_video(np.stack(frames), fps, codec))
        infos.append({"video_id": video_id, "duration": f"{len(frames) / fps:.2f}", "fps": str(fps),
                      "resolution": f"{image_size}x{image_size}"})
    for name, table, columns in (("EPIC_100_train.csv", rows, EPIC_100_COLUMNS),
                                 ("EPIC_100_video_info.csv", infos, ("video_id", "duration", "fps", "resolution"))):
        with open(out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(table)
    return rows
