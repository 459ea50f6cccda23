"""Benchmark wamdata's stream against the loaders people use today, on the same shards and the same windows.

    python benchmarks/stream.py [--data toy|gr00t] [--windows 1500] [--workers 2] [--batch-size 32]

Every loader produces the same training windows (frames t-3 .. t+4 of one camera, an action chunk of 16)
of the same dataset, with the same number of dataloader worker processes and batch size:

* wamdata     ``StreamLoader(WindowStream(...))``: shuffled order (shard order + block shuffle), one range
              read per episode from the shard, PyAV decode of the window's frames, normalization, masks;
* webdataset  a plain ``webdataset`` pipeline over the same tars (shards split by worker, no shuffle, its
              best case): each episode sample is expanded into its windows with the same decode call;
* lerobot     LeRobot's layout: one mp4 per episode (the same encoded bytes, written out by this script)
              and a map-style dataset that opens the episode's file and decodes per sample, shuffled;
* decode bound the same windows decoded from in-memory bytes in a tight loop, in as many processes.

clips/s counts windows from the first batch to the last (worker start-up excluded, for every loader), best
of ``--rounds`` interleaved runs.
Ratios are against each baseline measured in the same run. Each loader runs in a fresh process, which
reports its own peak RSS and its largest worker's. Resume time is load_state_dict + the first batch (best of 3), at
1k and at 100k windows into the epoch (the dataset is listed as often as needed to pass 100k windows).

Data: ``toy`` generates toy-world episodes (96x96) once into build/bench/; ``gr00t`` writes the real GR00T
PickNPlace episodes (256x256 ego view, 44-D action/state) from ../shared/data/real into a wamdata dataset.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout, without installing the package

from wamdata.format.reader import Dataset as WamDataset  # noqa: E402
from wamdata.format.schema import ArraySpec, CameraSpec, Episode, SourceSpec  # noqa: E402
from wamdata.format.shards import load_npy, read_members  # noqa: E402
from wamdata.format.writer import DatasetWriter  # noqa: E402
from wamdata.media.codec import DEFAULT_CODEC  # noqa: E402
from wamdata.media.decode import decode_frames  # noqa: E402
from wamdata.sources.toyworld import load_config  # noqa: E402
from wamdata.stream import StreamConfig, StreamLoader, WindowSpec, WindowStream  # noqa: E402
from wamdata.toy.demo import run_demo  # noqa: E402

REAL_DATA = Path(os.environ.get("WAMDATA_REAL_DATA", REPO.parent / "shared/data/real"))
GR00T = REAL_DATA / "lerobot_gr00t_picknplace/robot_sim.PickNPlace"
BUILD = REPO / "build/bench"
CONTEXT, HORIZON, ACTION_HORIZON = 3, 4, 16


# ---------------------------------------------------------------------------------------------- data


def toy_dataset() -> Path:
    root = BUILD / "stream-toy"
    if not (root / "dataset.json").exists():
        config = load_config(None)
        config.update(image_size=96, shard_bytes=2_000_000)
        config["sources"]["toy_robot"]["episodes"] = 240
        config["sources"]["toy_human"]["episodes"] = 80
        run_demo(config, out=root, progress=True)
    return root


def gr00t_dataset() -> Path:
    root = BUILD / "stream-gr00t"
    if (root / "dataset.json").exists():
        return root
    spec = SourceSpec(
        name="gr00t_picknplace", kind="sim", format="lerobot", embodiment="gr1_arms_waist", fps=20.0,
        cameras={"ego_view": CameraSpec(256, 256, DEFAULT_CODEC.to_json())},
        arrays={"action": ArraySpec("float32", (44,)), "state": ArraySpec("float32", (44,))},
    )
    with DatasetWriter(root, "gr00t_bench", [spec], shard_bytes=1_000_000) as writer:
        for path in sorted((GR00T / "data/chunk-000").glob("episode_*.parquet")):
            table = pq.read_table(path).to_pydict()
            video = GR00T / "videos/chunk-000/observation.images.ego_view" / path.with_suffix(".mp4").name
            frames = decode_frames(video)
            steps = min(len(frames), len(table["action"]))
            writer.write(Episode(
                source=spec.name, native_key=path.stem, num_steps=steps, frames={"ego_view": frames[:steps]},
                arrays={name: np.asarray(table[column][:steps], dtype=np.float32)
                        for name, column in (("action", "action"), ("state", "observation.state"))},
            ))
        writer.close()
    return root


def stream_config(urls: tuple[str, ...], batch_size: int, anchor_every: int) -> StreamConfig:
    return StreamConfig(urls=urls, batch_size=batch_size, split=None, seed=0, shuffle_window=4096,
                        window=WindowSpec(context=CONTEXT, horizon=HORIZON, action_horizon=ACTION_HORIZON,
                                          anchor_every=anchor_every))


def window_steps(anchor: int, num_steps: int) -> np.ndarray:
    steps = anchor + np.arange(-CONTEXT, HORIZON + 1)
    return steps[(steps >= 0) & (steps < num_steps)]


def decode_window(video: bytes | str, anchor: int, num_steps: int) -> np.ndarray:
    steps = window_steps(anchor, num_steps)
    return decode_frames(video, int(steps[0]), int(steps[-1]) + 1)[steps - steps[0]]


def action_chunk(actions: np.ndarray | None, anchor: int) -> np.ndarray:
    out = np.zeros((ACTION_HORIZON, 44), dtype=np.float32)
    if actions is not None:
        chunk = actions[anchor: anchor + ACTION_HORIZON]
        out[: len(chunk), : chunk.shape[1]] = chunk
    return out


# ---------------------------------------------------------------------------------------------- loaders


def peak_rss_mb() -> tuple[float, float]:
    """(this process, its largest finished child) peak resident memory, MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def timed(batches: object) -> tuple[int, float]:
    clips, start = 0, None
    for batch in batches:
        if start is None:
            start = time.perf_counter()
            continue
        clips += len(batch["anchor"])
    return clips, time.perf_counter() - (start or time.perf_counter())


def run_wamdata(root: str, camera: str, workers: int, batch_size: int, anchor_every: int) -> tuple[int, float]:
    del camera
    stream = WindowStream(stream_config((root,), batch_size, anchor_every), rank=0, world_size=1)
    return timed(StreamLoader(stream, num_workers=workers))


def _windows_by_episode(root: str, anchor_every: int) -> dict[str, list[int]]:
    rows = WamDataset.open(root).episodes.select(["episode_id", "num_steps"]).to_pylist()
    return {r["episode_id"]: list(range(0, r["num_steps"], anchor_every)) for r in rows}


def run_webdataset(root: str, camera: str, workers: int, batch_size: int, anchor_every: int) -> tuple[int, float]:
    anchors = _windows_by_episode(root, anchor_every)

    def expand(samples: object) -> object:
        for sample in samples:
            meta = json.loads(sample["meta.json"])
            actions = load_npy(sample["action.npy"]) if "action.npy" in sample else None
            for anchor in anchors[meta["episode_id"]]:
                yield {"frames": decode_window(sample[f"{camera}.mp4"], anchor, meta["num_steps"]),
                       "action": action_chunk(actions, anchor), "anchor": anchor}

    urls = sorted(str(p) for p in Path(root).glob("shards/*/*.tar"))
    pipeline = wds.DataPipeline(wds.SimpleShardList(urls), wds.split_by_worker, wds.tarfile_to_samples(), expand)
    return timed(DataLoader(pipeline, batch_size=batch_size, num_workers=workers, collate_fn=_collate_padded))


def _collate_padded(samples: list[dict]) -> dict:
    # Windows at an episode's edges have fewer frames; pad like wamdata does so batches stack.
    frames = np.zeros((len(samples), CONTEXT + HORIZON + 1, *samples[0]["frames"].shape[1:]), dtype=np.uint8)
    for i, s in enumerate(samples):
        frames[i, : len(s["frames"])] = s["frames"]
    return {"frames": torch.from_numpy(frames), "action": torch.from_numpy(np.stack([s["action"] for s in samples])),
            "anchor": torch.tensor([s["anchor"] for s in samples])}


class LeRobotStyle(Dataset):
    """One mp4 and one action file per episode; each sample opens its episode's video and decodes."""

    def __init__(self, folder: Path, windows: list[tuple[str, int, int]]) -> None:
        self.folder = folder
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        episode_id, anchor, num_steps = self.windows[i]
        action_path = self.folder / f"{episode_id}.action.npy"
        actions = np.load(action_path, mmap_mode="r") if action_path.exists() else None
        return {"frames": decode_window(str(self.folder / f"{episode_id}.mp4"), anchor, num_steps),
                "action": action_chunk(actions, anchor), "anchor": anchor}


def export_lerobot_layout(root: str, camera: str, folder: Path) -> None:
    dataset = WamDataset.open(root)
    for row in dataset.episodes.to_pylist():
        members = read_members(dataset.shard_url(row["shard"]), row["members"])
        (folder / f"{row['episode_id']}.mp4").write_bytes(members[f"{camera}.mp4"])
        if "action.npy" in members:
            (folder / f"{row['episode_id']}.action.npy").write_bytes(members["action.npy"])


def run_lerobot(root: str, camera: str, workers: int, batch_size: int, anchor_every: int) -> tuple[int, float]:
    rows = WamDataset.open(root).episodes.select(["episode_id", "num_steps"]).to_pylist()
    steps = {r["episode_id"]: r["num_steps"] for r in rows}
    windows = [(e, a, steps[e]) for e, anchors in _windows_by_episode(root, anchor_every).items() for a in anchors]
    with tempfile.TemporaryDirectory() as folder:
        export_lerobot_layout(root, camera, Path(folder))
        loader = DataLoader(LeRobotStyle(Path(folder), windows), batch_size=batch_size, num_workers=workers,
                            shuffle=True, generator=torch.Generator().manual_seed(0), collate_fn=_collate_padded)
        return timed(loader)


def _decode_share(args: tuple[str, str, int, int, int]) -> tuple[int, float]:
    root, camera, anchor_every, part, parts = args
    dataset = WamDataset.open(root)
    work = []
    for row in dataset.episodes.to_pylist()[part::parts]:
        members = read_members(dataset.shard_url(row["shard"]), row["members"])
        work += [(members[f"{camera}.mp4"], a, row["num_steps"]) for a in range(0, row["num_steps"], anchor_every)]
    start = time.perf_counter()
    for video, anchor, num_steps in work:
        decode_window(video, anchor, num_steps)
    return len(work), time.perf_counter() - start


def run_decode_bound(root: str, camera: str, workers: int, batch_size: int, anchor_every: int) -> tuple[int, float]:
    del batch_size
    parts = max(workers, 1)
    with mp.get_context("spawn").Pool(parts) as pool:
        results = pool.map(_decode_share, [(root, camera, anchor_every, p, parts) for p in range(parts)])
    clips = sum(c for c, _ in results)
    rate = sum(c / s for c, s in results)
    return clips, clips / rate


LOADERS = {"wamdata": run_wamdata, "webdataset": run_webdataset, "lerobot": run_lerobot,
           "decode bound": run_decode_bound}


def _measure_in_child(name: str, args: tuple, queue: mp.Queue) -> None:
    # This process was spawned (a clean slate per loader); its dataloader workers fork, as on any Linux trainer.
    mp.set_start_method("fork", force=True)
    torch.set_num_threads(1)
    try:
        clips, seconds = LOADERS[name](*args)
        queue.put((clips, seconds, *peak_rss_mb()))
    except BaseException:
        queue.put(traceback.format_exc())
        raise


def measure(name: str, args: tuple) -> tuple[int, float, float, float]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure_in_child, args=(name, args, queue))
    process.start()
    result = queue.get(timeout=1800)
    process.join()
    if isinstance(result, str):
        raise RuntimeError(f"loader {name!r} failed:\n{result}")
    return result


def resume_seconds(root: str, batch_size: int, workers: int, into: int) -> tuple[float, int]:
    probe = WindowStream(stream_config((root,), batch_size, 1), rank=0, world_size=1)
    copies = -(-(100_000 + 10 * batch_size) // len(probe.index))
    stream = WindowStream(stream_config((root,) * copies, batch_size, 1), rank=0, world_size=1)
    loader = StreamLoader(stream, num_workers=workers)
    state = loader.state_dict() | {"consumed": into - into % batch_size}
    start = time.perf_counter()
    loader.load_state_dict(state)
    next(iter(loader))
    return time.perf_counter() - start, len(stream.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("toy", "gr00t"), default="toy")
    parser.add_argument("--windows", type=int, default=1500, help="about this many windows per loader")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs per loader")
    args = parser.parse_args()
    root = str(toy_dataset() if args.data == "toy" else gr00t_dataset())
    camera = "front" if args.data == "toy" else "ego_view"
    total_steps = sum(WamDataset.open(root).episodes.column("num_steps").to_pylist())
    anchor_every = max(1, total_steps // args.windows)
    print(f"data: {root} ({total_steps} steps); windows: every {anchor_every}th step, {CONTEXT + HORIZON + 1} "
          f"frames of {camera!r} + {ACTION_HORIZON} actions; {args.workers} workers, batch {args.batch_size}; "
          f"{os.cpu_count()} cores")
    results: dict[str, tuple[int, float, float, float]] = {}
    for _ in range(args.rounds):  # rounds interleave the loaders, so load from other jobs hits them alike
        for name in LOADERS:
            run = measure(name, (root, camera, args.workers, args.batch_size, anchor_every))
            if name not in results or run[0] / run[1] > results[name][0] / results[name][1]:
                results[name] = run
    for name, (clips, seconds, rss_main, rss_worker) in results.items():
        print(f"  {name:<13} {clips:>6} clips in {seconds:6.2f} s = {clips / seconds:8.1f} clips/s   peak RSS: "
              f"main {rss_main:6.0f} MB, largest worker {rss_worker:6.0f} MB")
    rate = {name: clips / seconds for name, (clips, seconds, _, _) in results.items()}
    ours = rate["wamdata"]
    print(f"wamdata vs webdataset: {ours / rate['webdataset']:.2f}x (goal >= 1.0)   "
          f"vs lerobot-style: {ours / rate['lerobot']:.2f}x (goal >= 1.5)   "
          f"vs decode bound: {ours / rate['decode bound']:.2f}x (goal >= 0.9)")
    near, windows = min(resume_seconds(root, args.batch_size, args.workers, 1_000) for _ in range(3))
    far, _ = min(resume_seconds(root, args.batch_size, args.workers, 100_000) for _ in range(3))
    print(f"resume (load_state_dict + first batch, {windows} windows per epoch): at 1k {near * 1000:.0f} ms, "
          f"at 100k {far * 1000:.0f} ms, ratio {far / near:.2f}")


if __name__ == "__main__":
    main()
