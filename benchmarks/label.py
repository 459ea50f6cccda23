"""Benchmark ``wamdata label apply`` against the bare model forward pass on the same frames.

    python benchmarks/label.py [--episodes 400] [--model lam idm] [--batch-size 256] [--rounds 2]

For each model (a random-init checkpoint of the default LAMConfig / IDMConfig: the cost does not depend on
the weights):

* bare      the model's forward (the labeler's own, ``LamHead.forward`` / ``IdmHead.forward``: the IDM's
            includes its 4 dropout samples) on every labelled episode's model inputs, decoded and resized
            beforehand (not timed), in batches of --batch-size, in as many processes as the pipeline has
            actors (one per core), one torch thread each, as the actors run: from the first process's start
            to the last one's end;
* pipeline  ``label_apply`` end to end on a fresh copy of the dataset: Ray Data actor pool (one actor per
            core, one thread each), range read + decode + resize + the same forward + tar writing + manifest
            + episodes.parquet. Ray is started before the clock (as in benchmarks/ingest.py); actor start-up
            (importing torch, loading the checkpoint) is in it.

Both rates count the frames of the labelled episodes; best of --rounds. The pipeline overhead ratio is
pipeline frames/s over bare frames/s: 1.0 would mean labeling costs nothing beyond the model. (One process
with torch's default intra-op threads is no bound: on the shared 2-core VM it ran these small convolutions
3-4x slower with 2 threads than with 1.)

Data: toy-world episodes (robot and human hand, 64x64) generated once into build/bench/label-toy.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout, without installing the package

from wamdata.cluster import RaySession  # noqa: E402
from wamdata.format.reader import Dataset  # noqa: E402
from wamdata.labeling.actor import episode_frames, pooled_forward  # noqa: E402
from wamdata.labeling.apply import LabelOptions, label_apply, select_episodes  # noqa: E402
from wamdata.labeling.checkpoint import open_checkpoint  # noqa: E402
from wamdata.labeling.config import IDMConfig, LAMConfig  # noqa: E402
from wamdata.labeling.heads import make_head  # noqa: E402
from wamdata.labeling.idm import InverseDynamicsModel  # noqa: E402
from wamdata.labeling.lam import LatentActionModel, frames_to_tensor  # noqa: E402
from wamdata.sources.toyworld import load_config  # noqa: E402
from wamdata.toy.demo import run_demo  # noqa: E402
from wamdata.train.checkpoint import save_model  # noqa: E402

BUILD = REPO / "build/bench"


def toy_dataset(episodes: int) -> Path:
    root = BUILD / f"label-toy-{episodes}"
    if not (root / "dataset.json").exists():
        config = load_config(None)
        config["sources"]["toy_robot"]["episodes"] = episodes * 3 // 4
        config["sources"]["toy_human"]["episodes"] = episodes - episodes * 3 // 4
        run_demo(config, out=root, progress=True)
    return root


def checkpoint(kind: str, folder: Path) -> Path:
    torch.manual_seed(0)
    model = (LatentActionModel(LAMConfig()) if kind == "lam"
             else InverseDynamicsModel(IDMConfig(action_dim=2, embodiment="toy_pusher")))
    return save_model(model.eval(), folder / kind)


def bare_worker(root: Path, folder: Path, options: LabelOptions, part: int, parts: int, barrier: Any,
                results: Any) -> None:
    """One process's share of the episodes: inputs prepared, then (frames, start, end) of the forward alone."""
    torch.set_num_threads(1)
    dataset = Dataset.open(root)
    _, model = open_checkpoint(folder)
    head = make_head(model, dataset, options.mc_samples)
    episodes = select_episodes(dataset, options)[0][part::parts]
    inputs = [(e, head.inputs(episode_frames(dataset, e, model.config.image_size), e.fps).copy()) for e in episodes]

    @torch.no_grad()
    def forward(batch: np.ndarray) -> list[np.ndarray]:
        return [o.float().numpy() for o in head.forward(frames_to_tensor(batch))]

    barrier.wait()
    started = time.time()
    for _ in pooled_forward(inputs, forward, options.batch_size):
        pass
    results.put((sum(e.num_steps for e in episodes), started, time.time()))


def bare_forward(root: Path, folder: Path, options: LabelOptions, processes: int) -> tuple[int, float]:
    """(frames, seconds) of the labeler's forward alone over inputs already in memory, in ``processes``."""
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=bare_worker, args=(root, folder, options, i, processes, barrier, results))
               for i in range(processes)]
    for worker in workers:
        worker.start()
    frames, starts, ends = zip(*(results.get() for _ in workers), strict=True)
    for worker in workers:
        worker.join()
    return sum(frames), max(ends) - min(starts)


def pipeline(root: Path, folder: Path, options: LabelOptions, scratch: Path) -> tuple[int, float]:
    copy = scratch / "dataset"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    started = time.perf_counter()
    result = label_apply(copy, folder, options=options, progress=False)
    return result.frames, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--model", nargs="+", default=["lam", "idm"], choices=["lam", "idm"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = toy_dataset(args.episodes)
    options = LabelOptions(batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp, RaySession(None):
        scratch = Path(tmp)
        actors = int(ray.cluster_resources()["CPU"])  # label_apply's default pool: one actor per CPU
        for kind in args.model:
            folder = checkpoint(kind, scratch)
            bare = min((bare_forward(root, folder, options, actors) for _ in range(args.rounds)), key=lambda r: r[1])
            piped = min((pipeline(root, folder, options, scratch) for _ in range(args.rounds)), key=lambda r: r[1])
            assert bare[0] == piped[0], (bare, piped)
            bare_rate, piped_rate = bare[0] / bare[1], piped[0] / piped[1]
            print(f"{kind}  {bare[0]:6d} frames   bare forward {bare_rate:8.0f} frames/s ({bare[1]:5.1f} s)   "
                  f"label apply {piped_rate:6.0f} frames/s ({piped[1]:5.1f} s)   "
                  f"pipeline overhead ratio {piped_rate / bare_rate:.2f}", flush=True)


if __name__ == "__main__":
    main()
