"""Shared fixtures: the real sample data folder and a small demo dataset built once per session."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

# Ray binds the loopback address instead of the host's (tests never reach another machine); read by Ray at
# import, so set before any test module imports it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import wamdata.ingest
from wamdata.format.reader import Dataset
from wamdata.format.validate import validate
from wamdata.format.writer import DatasetWriter
from wamdata.ingest import IngestResult
from wamdata.media.codec import psnr
from wamdata.sources import Rejected, SourceAdapter
from wamdata.sources.toyworld import load_config
from wamdata.toy.demo import run_demo

BRIDGE_RLDS = Path("oxe_bridge_debug/bridge_dataset/1.0.0")
REAL_DATA = Path(os.environ.get("WAMDATA_REAL_DATA", Path(__file__).resolve().parents[2] / "shared/data/real"))


def small_demo_config() -> dict:
    """The packaged demo config, shrunk: enough episodes for several shards per source, fast to build."""
    config = load_config(None)
    config["sources"]["toy_robot"]["episodes"] = 30
    config["sources"]["toy_human"]["episodes"] = 12
    config["shard_bytes"] = 60_000
    config["native_formats"]["lerobot"]["episodes"] = 4
    config["native_formats"]["robomimic"]["episodes"] = 4
    config["native_formats"]["epic_kitchens"].update(videos=2, segments_per_video=2)
    config["labeling"]["lam"] = {"steps": 40, "codebook_size": 8}
    return config


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.fail(f"real sample data not found at {REAL_DATA} (set WAMDATA_REAL_DATA)")
    return REAL_DATA


@pytest.fixture(scope="session")
def bridge_ingest(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[IngestResult, Path]:
    """The bridge RLDS debug episodes ingested once per session: reading them through tfds takes a minute."""
    out = tmp_path_factory.mktemp("bridge") / "bridge"
    return wamdata.ingest.ingest("oxe_rlds", str(real_data / BRIDGE_RLDS), out, progress=False), out


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "toy"
    result = run_demo(small_demo_config(), out=root, progress=False)
    assert result.problems == []
    return root


def cell_frames(num_frames: int, height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """Frames of 16x16 flat-coloured cells, recoloured every frame: each frame looks like no other, so a
    clip frame matched against its source frame shows both the content (PSNR) and the alignment."""
    # Muted colours (a grey level and a small tint), as a camera sees: fully random RGB lies partly outside
    # what 4:2:0 YUV can hold and caps any codec near 35 dB before the clip is even cut.
    rng = np.random.default_rng(seed)
    grid = (num_frames, height // 16, width // 16)
    cells = np.clip(rng.integers(40, 216, (*grid, 1)) + rng.integers(-24, 25, (*grid, 3)), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(cells, 16, axis=1), 16, axis=2)


def write_video(path: Path, frames: np.ndarray, rate: Fraction | int, crf: int = 12) -> Path:
    """An H.264 file at ``rate`` as a camera would write it (B-frames, PyAV's default muxer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.options = {"crf": str(crf)}
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def ingest(adapter: SourceAdapter, root: Path, keys: list[str] | None = None) -> tuple[Dataset, list[Rejected]]:
    """What the ingest pipeline does per work item (all, or those named): read it, write its episodes,
    collect its rejections; then the dataset must validate (every sample decodes)."""
    rejected = []
    with DatasetWriter(root, "test", adapter.specs()) as writer:
        for item in adapter.work_items():
            if keys is not None and item.key not in keys:
                continue
            for result in adapter.read(item):
                if isinstance(result, Rejected):
                    rejected.append(result)
                else:
                    writer.write(result)
        writer.close()
    assert validate(root, progress=False) == []
    return Dataset.open(root), rejected


def best_match(frame: np.ndarray, candidates: np.ndarray) -> tuple[int, float]:
    """Index of the candidate frame closest to ``frame`` and the PSNR to it."""
    scores = [psnr(frame, c) for c in candidates]
    return int(np.argmax(scores)), max(scores)


def assert_frames_are(frames: np.ndarray, source: np.ndarray, first: int) -> None:
    """Each frame is, of all the source frames, closest to source[first + k], at 35 dB or better."""
    for k, frame in enumerate(frames):
        index, quality = best_match(frame, source)
        assert (index, quality >= 35.0) == (first + k, True), f"frame {k}: best match {index} at {quality:.1f} dB"


def episodes_by_start(dataset: Dataset) -> list:
    """Every stored episode, in order of the time its clip starts in its video."""
    episodes = (dataset.read_episode(i) for i in range(len(dataset)))
    return sorted(episodes, key=lambda e: e.meta["info"]["clip_start_sec"])


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One embedded Ray (2 CPUs, no dashboard) shared by the tests of a module; ingest() joins it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cli(args: list[str], processes: int = 2, timeout: float = 300) -> str:
    """``wamdata ARGS`` as a one-node torchrun job of ``processes`` CPU ranks on loopback; returns its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(free_loopback_port()), "-m", "wamdata.cli", *args]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout
    return done.stdout


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file below root, by relative path: two datasets are byte-identical iff these are equal."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def rows_by_native_key(dataset) -> dict[str, int]:  # noqa: ANN001 - a wamdata.format.reader.Dataset
    """Row index of each episode in episodes.parquet, by its native key."""
    return {key: i for i, key in enumerate(dataset.episodes.column("native_key").to_pylist())}


def kill_cli_when(args: list[str], written: Path, pattern: str, env: dict[str, str] | None = None) -> None:
    """Run ``wamdata ARGS`` in a subprocess joined to this module's Ray, and SIGKILL it as soon as a file
    matching ``pattern`` appears under ``written``; it must not have finished by then."""
    import ray

    command = [sys.executable, "-m", "wamdata.cli", "-q", *args, "--address", ray.get_runtime_context().gcs_address]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 120
    while not (written.is_dir() and any(written.glob(pattern))):
        assert process.poll() is None, f"wamdata {args[0]} finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
