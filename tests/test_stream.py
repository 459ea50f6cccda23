"""wamdata.stream: exact coverage, resume, elastic resume, window contents, labels, remote cache, torchrun."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import free_loopback_port, small_demo_config
from wamdata.format.reader import Dataset
from wamdata.format.schema import ArraySpec, CameraSpec, Episode, SourceSpec
from wamdata.format.shards import Sample, ShardWriter, npy_bytes
from wamdata.format.writer import DatasetWriter
from wamdata.media.codec import DEFAULT_CODEC
from wamdata.media.decode import decode_frame_ranges, decode_frames, probe_video
from wamdata.media.frames import resize_frames
from wamdata.stream import StreamConfig, StreamLoader, WindowSpec, WindowStream
from wamdata.stream.cache import ShardCache
from wamdata.stream.loader import StreamError
from wamdata.stream.order import epoch_order
from wamdata.stream.partition import rank_batches
from wamdata.toy.demo import run_demo

TESTS = Path(__file__).resolve().parent


def _toy_dataset(root: Path, robot: int, human: int, shard_bytes: int, first_seed: int) -> Path:
    config = small_demo_config()
    config["sources"]["toy_robot"].update(episodes=robot, first_seed=first_seed)
    config["sources"]["toy_human"].update(episodes=human, first_seed=first_seed + 100_000)
    config["shard_bytes"] = shard_bytes
    config["max_steps"] = 40
    result = run_demo(config, out=root, progress=False)
    assert result.problems == []
    return root


@pytest.fixture(scope="module")
def uneven(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Two datasets whose shards differ by 10x and more: one episode per shard, and everything in one shard."""
    base = tmp_path_factory.mktemp("stream")
    singles = _toy_dataset(base / "singles", robot=4, human=2, shard_bytes=1, first_seed=0)
    bulk = _toy_dataset(base / "bulk", robot=14, human=6, shard_bytes=50_000_000, first_seed=1000)
    return str(singles), str(bulk)


def _config(urls: tuple[str, ...], **overrides: object) -> StreamConfig:
    settings: dict[str, object] = dict(urls=urls, batch_size=3, window=WindowSpec(anchor_every=2), split=None,
                                       shuffle_window=64, seed=7)
    settings.update(overrides)
    return StreamConfig(**settings)


def _ids(loader: StreamLoader, limit: int | None = None) -> list[list[int]]:
    batches = []
    for batch in loader:
        batches.append(batch["window_id"].tolist())
        if limit is not None and len(batches) == limit:
            break
    return batches


def _check_coverage(per_rank: list[list[list[int]]], total: int, batch_size: int, tail: str) -> None:
    counts = {len(batches) for batches in per_rank}
    assert len(counts) == 1, f"ranks yielded different batch counts: {[len(b) for b in per_rank]}"
    assert all(len(b) == batch_size for batches in per_rank for b in batches)
    seen = Counter(i for batches in per_rank for b in batches for i in b)
    global_batch = len(per_rank) * batch_size
    yielded = sum(seen.values())
    if tail == "pad":
        assert set(seen) == set(range(total))
        assert yielded - total < global_batch
    else:
        assert max(seen.values()) == 1
        assert total - yielded < global_batch


def test_epoch_order_is_a_pure_function_with_bounded_displacement() -> None:
    sizes = np.array([1, 200, 3, 57, 1000, 2, 64])
    a = epoch_order(sizes, seed=3, epoch=5, shuffle_window=32)
    assert np.array_equal(a, epoch_order(sizes, seed=3, epoch=5, shuffle_window=32))
    assert not np.array_equal(a, epoch_order(sizes, seed=3, epoch=6, shuffle_window=32))
    assert np.array_equal(np.sort(a), np.arange(sizes.sum()))
    assert np.array_equal(epoch_order(sizes, 3, 5, shuffle_window=0), np.arange(sizes.sum()))
    # Each window lands within the shuffle window of where its shard's turn put it: a bounded working set.
    firsts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    shard_of = np.searchsorted(firsts, a, side="right") - 1
    distinct_per_stretch = [len(set(shard_of[i: i + 32])) for i in range(0, len(a), 32)]
    assert max(distinct_per_stretch) <= 4


@pytest.mark.parametrize("tail", ["pad", "drop"])
def test_partition_arithmetic_covers_every_position(tail: str) -> None:
    for total in (1, 7, 100, 101, 1009):
        for world in (1, 2, 3, 4, 8):
            for half in (0, total // 2):
                consumed = half - half % (world * 4)  # a resume point lies on a global batch boundary
                per_rank = [rank_batches(total, consumed, world, r, 4, tail) for r in range(world)]
                assert len({len(b) for b in per_rank}) == 1
                positions = np.concatenate([b.reshape(-1) for b in per_rank])
                done = np.arange(consumed) if consumed else np.array([], dtype=np.int64)
                seen = Counter(np.concatenate([done, positions]).tolist())
                if tail == "pad":
                    assert set(seen) == set(range(total))
                else:
                    assert max(seen.values(), default=1) == 1 and total - sum(seen.values()) < world * 4


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_every_rank_gets_equal_batches_and_every_window_once(uneven: tuple[str, str], world_size: int) -> None:
    config = _config(uneven)
    for workers in (0, 1, 2):
        streams = [WindowStream(config, rank=r, world_size=world_size) for r in range(world_size)]
        total = len(streams[0].index)
        assert max(streams[0].index.shard_sizes) >= 10 * min(streams[0].index.shard_sizes)
        per_rank = [_ids(StreamLoader(s, num_workers=workers)) for s in streams]
        _check_coverage(per_rank, total, config.batch_size, "pad")
        # The DataLoader's batches are exactly the partition's, in order, whatever the worker count.
        for rank, batches in enumerate(per_rank):
            order = epoch_order(streams[0].index.shard_sizes, config.seed, 0, config.shuffle_window)
            expected = order[rank_batches(total, 0, world_size, rank, config.batch_size, "pad")]
            assert batches == expected.tolist()
    drop = _config(uneven, tail="drop")
    per_rank = [_ids(StreamLoader(WindowStream(drop, rank=r, world_size=world_size), num_workers=2))
                for r in range(world_size)]
    _check_coverage(per_rank, total, drop.batch_size, "drop")


def test_resume_continues_with_the_batch_that_would_have_come(uneven: tuple[str, str]) -> None:
    config = _config(uneven)
    full = [_ids(StreamLoader(WindowStream(config, rank=r, world_size=2), num_workers=2)) for r in range(2)]
    loaders = [StreamLoader(WindowStream(config, rank=r, world_size=2), num_workers=2) for r in range(2)]
    first = [_ids(loader, limit=5) for loader in loaders]
    states = [loader.state_dict() for loader in loaders]
    assert states[0] == states[1] and states[0]["consumed"] == 5 * 2 * config.batch_size
    json.dumps(states[0])  # a checkpoint can hold it as JSON
    for rank in range(2):
        resumed = StreamLoader(WindowStream(config, rank=rank, world_size=2), num_workers=1)
        resumed.load_state_dict(states[0])
        assert first[rank] + _ids(resumed) == full[rank]
        assert resumed.state_dict()["epoch"] == 1 and resumed.state_dict()["consumed"] == 0
    # The resumed batch is the same data, not only the same ids.
    again = StreamLoader(WindowStream(config, rank=0, world_size=2), num_workers=0)
    again.load_state_dict(states[0])
    reference = StreamLoader(WindowStream(config, rank=0, world_size=2), num_workers=0)
    expected = [b for i, b in zip(range(6), reference, strict=False)][5]
    got = next(iter(again))
    assert np.array_equal(got["frames/front"].numpy(), expected["frames/front"].numpy())
    assert np.array_equal(got["action"].numpy(), expected["action"].numpy())


def test_elastic_resume_from_2_to_3_ranks_loses_and_repeats_nothing(uneven: tuple[str, str]) -> None:
    config = _config(uneven, tail="drop")
    two = [StreamLoader(WindowStream(config, rank=r, world_size=2), num_workers=1) for r in range(2)]
    before = [_ids(loader, limit=7) for loader in two]
    state = two[0].state_dict()
    three = []
    for rank in range(3):
        loader = StreamLoader(WindowStream(config, rank=rank, world_size=3), num_workers=2)
        loader.load_state_dict(state)
        three.append(_ids(loader))
    assert len({len(b) for b in three}) == 1
    seen = Counter(i for part in (before, three) for batches in part for b in batches for i in b)
    total = len(WindowStream(config, rank=0, world_size=1).index)
    assert max(seen.values()) == 1
    assert total - sum(seen.values()) < 3 * config.batch_size
    # With padding, the union is every window.
    padded = _config(uneven, tail="pad")
    state = StreamLoader(WindowStream(padded, rank=0, world_size=2)).state_dict() | {"consumed": state["consumed"]}
    rest = []
    for rank in range(3):
        loader = StreamLoader(WindowStream(padded, rank=rank, world_size=3), num_workers=0)
        loader.load_state_dict(state)
        rest += [i for b in _ids(loader) for i in b]
    assert set(rest) | {i for batches in before for b in batches for i in b} == set(range(total))


def test_resume_refuses_a_state_of_other_data(uneven: tuple[str, str]) -> None:
    state = StreamLoader(WindowStream(_config(uneven), rank=0, world_size=1)).state_dict()
    other = StreamLoader(WindowStream(_config(uneven, seed=8), rank=0, world_size=1))
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)


def test_windows_hold_the_stored_frames_actions_and_masks(demo_dataset: Path) -> None:
    spec = WindowSpec(context=2, horizon=3, frame_stride=3, action_horizon=6)
    stream = WindowStream(_config((str(demo_dataset),), window=spec, split="train"), rank=0, world_size=1)
    dataset = Dataset.open(demo_dataset)
    normalizer = stream.normalizer
    assert normalizer is not None
    checked = Counter()
    for sample in stream:
        episode = dataset.read_episode(sample["episode_id"])
        t, num_steps = int(sample["anchor"]), episode.meta["num_steps"]
        steps = t + np.arange(-2, 4) * 3
        inside = (steps >= 0) & (steps < num_steps)
        assert np.array_equal(sample["frame_mask/front"], inside)
        assert np.array_equal(sample["frames/front"][inside], episode.frames("front")[steps[inside]])
        assert not sample["frames/front"][~inside].any()
        if episode.meta["has_actions"]:
            chunk = episode.arrays["action"][t: t + 6]
            assert sample["action_mask"].sum() == chunk.size
            restored = normalizer.unnormalize(sample["action"][: len(chunk)], "toy_pusher", "action")
            stats = dataset.info["stats"]["by_embodiment"]["toy_pusher"]["action"]
            clipped = np.clip(chunk, stats["q01"], stats["q99"])
            np.testing.assert_allclose(restored, clipped, atol=1e-5)
            assert np.abs(sample["action"]).max() <= 1.0
            np.testing.assert_allclose(
                normalizer.unnormalize(sample["state"], "toy_pusher", "state"),
                np.clip(episode.arrays["state"][t], *(np.array(s) for s in (
                    dataset.info["stats"]["by_embodiment"]["toy_pusher"]["state"][q] for q in ("q01", "q99")))),
                atol=1e-5,
            )
            checked["robot"] += 1
        else:
            assert not sample["action_mask"].any() and not sample["state_mask"].any()
            assert sample["embodiment"] == "human_hand"
            checked["human"] += 1
        if sum(checked.values()) >= 60 and checked["human"] and checked["robot"]:
            break
    assert checked["human"] and checked["robot"]


def test_resize_float_frames_and_padded_action_dims(demo_dataset: Path) -> None:
    config = _config((str(demo_dataset),), image_size=(24, 40), image_dtype="float32", action_dim=5, state_dim=8,
                     normalization="mean_std")
    batch = next(iter(StreamLoader(WindowStream(config, rank=0, world_size=1), num_workers=0)))
    frames = batch["frames/front"]
    assert frames.shape == (3, 1, 24, 40, 3) and frames.dtype.is_floating_point
    assert float(frames.min()) >= 0 and float(frames.max()) <= 1 and float(frames.max()) > 0.2
    assert batch["action"].shape == (3, 1, 5) and not batch["action_mask"][:, :, 2:].any()
    assert batch["state"].shape == (3, 8) and not batch["state_mask"][:, 6:].any()
    with pytest.raises(ValueError, match="narrower"):
        WindowStream(_config((str(demo_dataset),), action_dim=1), rank=0, world_size=1)


def test_label_sidecars_come_with_their_windows(demo_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "labelled"
    shutil.copytree(demo_dataset, root)
    dataset = Dataset.open(root)
    rows = dataset.episodes.select(["episode_id", "num_steps"]).to_pylist()
    labelled = {r["episode_id"]: np.arange(r["num_steps"], dtype=np.int64) * 10 + i for i, r in enumerate(rows[::2])}
    writer = ShardWriter(root, "labels/lam_test", target_bytes=1 << 20)
    for episode_id, codes in sorted(labelled.items()):
        writer.add(Sample(key=episode_id, meta={}, members=(("latent_action.npy", npy_bytes(codes)),)))
    writer.close()
    spec = WindowSpec(action_horizon=4)
    stream = WindowStream(_config((str(root),), window=spec, labels=("lam_test",)), rank=0, world_size=1)
    seen = Counter()
    for sample in stream:
        codes, mask = sample["labels/lam_test/latent_action"], sample["labels/lam_test/latent_action_mask"]
        t = int(sample["anchor"])
        if sample["episode_id"] in labelled:
            expected = labelled[sample["episode_id"]][t: t + 4]
            assert mask.sum() == len(expected) and np.array_equal(codes[: len(expected)], expected)
            seen["labelled"] += 1
        else:
            assert not mask.any()
            seen["unlabelled"] += 1
    assert seen["labelled"] and seen["unlabelled"]


def test_a_corrupt_shard_names_the_file(demo_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "corrupt"
    shutil.copytree(demo_dataset, root)
    row = Dataset.open(root).row(0)
    video = next(m for m in row["members"] if m["name"].endswith(".mp4"))
    with open(root / row["shard"], "r+b") as f:
        f.seek(video["offset"])
        f.write(b"\xff" * min(video["size"], 4096))
    stream = WindowStream(_config((str(root),), shuffle_window=0), rank=0, world_size=1)
    with pytest.raises(StreamError, match=row["shard"]):
        for _ in stream:
            pass


# ---------------------------------------------------------------------------------------------- remote


class _RangeHandler(SimpleHTTPRequestHandler):
    """Serves a folder with HTTP Range support; corrupts the first response for one path, answers 503 to the
    first request for another; counts requests per path."""

    corrupt_path = ""
    unavailable_path = ""
    requests: Counter = Counter()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        type(self).requests[self.path] += 1
        if self.path == self.unavailable_path and type(self).requests[self.path] == 1:
            self.send_error(503)
            return
        if self.path == self.corrupt_path and type(self).requests[self.path] == 1:
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        status, body = 200, data
        header = self.headers.get("Range")
        if header:
            start_text, end_text = header.removeprefix("bytes=").split("-")
            start = int(start_text)
            end = min(int(end_text) if end_text else len(data) - 1, len(data) - 1)
            status, body = 206, data[start: end + 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()


def test_remote_shards_through_a_bounded_cache_survive_a_corrupt_download(
    uneven: tuple[str, str], tmp_path: Path
) -> None:
    singles = Path(uneven[0])
    shards = sorted(singles.glob("shards/*/*.tar"))
    _RangeHandler.corrupt_path = f"/{shards[1].relative_to(singles)}"
    _RangeHandler.unavailable_path = f"/{shards[2].relative_to(singles)}"
    _RangeHandler.requests = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(singles)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        limit = 2 * max(p.stat().st_size for p in shards) + 1
        assert limit < sum(p.stat().st_size for p in shards)
        cache = tmp_path / "cache"
        remote = _config((url,), cache_dir=str(cache), cache_bytes=limit, prefetch_shards=1)
        got = list(StreamLoader(WindowStream(remote, rank=0, world_size=1), num_workers=1))
        local = list(StreamLoader(WindowStream(_config((str(singles),)), rank=0, world_size=1), num_workers=0))
        after_cached_run = Counter(_RangeHandler.requests)
        # Without a cache folder each episode is one range request, and the windows are the same.
        uncached = list(StreamLoader(WindowStream(_config((url,)), rank=0, world_size=1), num_workers=0))
    finally:
        server.shutdown()
        server.server_close()
    assert [b["window_id"].tolist() for b in got] == [b["window_id"].tolist() for b in local]
    for a, b in zip(got, local, strict=True):
        assert np.array_equal(a["frames/front"].numpy(), b["frames/front"].numpy())
    for a, b in zip(uncached, local, strict=True):
        assert np.array_equal(a["frames/front"].numpy(), b["frames/front"].numpy())
    assert sum(_RangeHandler.requests.values()) > sum(after_cached_run.values())
    # The corrupt copy (a flipped byte in a tar header, which no reader of the sample would notice) was refused
    # by its checksum and fetched again; the 503 was retried.
    assert after_cached_run[_RangeHandler.corrupt_path] >= 2
    assert after_cached_run[_RangeHandler.unavailable_path] >= 2
    cached = list(cache.glob("*.tar"))
    assert sum(p.stat().st_size for p in cached) <= limit and len(cached) < len(shards)
    assert not list(cache.glob("*.partial"))


def test_cache_gives_up_on_a_shard_that_never_matches_its_checksum(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "shard.tar").write_bytes(b"not what the manifest says")
    cache = ShardCache(tmp_path / "cache", limit_bytes=1 << 20, retries=2, backoff_s=0)
    with caplog.at_level(logging.WARNING, logger="wamdata.stream.cache"), \
            pytest.raises(OSError, match="shard.tar.*3 attempts.*sha256"):
        cache.get(str(tmp_path / "shard.tar"), "0" * 64)
    assert caplog.text.count("differs from episodes.parquet") == 3 and not list((tmp_path / "cache").iterdir())


# ---------------------------------------------------------------------------------------------- torchrun


def test_torchrun_two_nodes_cover_every_window_exactly(uneven: tuple[str, str], tmp_path: Path) -> None:
    port = free_loopback_port()
    out = tmp_path / "coverage.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parent)}
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
             str(TESTS / "stream_torchrun_coverage.py"), str(out), *uneven],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for node in (0, 1)
    ]
    logs = []
    for node in nodes:
        try:
            logs.append(node.communicate(timeout=180)[0])
        except subprocess.TimeoutExpired:
            for n in nodes:
                n.kill()
            raise
    assert all(n.returncode == 0 for n in nodes), "\n".join(logs)
    result = json.loads(out.read_text())
    assert result["world_size"] == 2
    assert result["batches_min"] == result["batches_max"] > 0
    assert result["windows"] == result["covered"] and result["duplicates"] < 2 * result["batch_size"]


# ---------------------------------------------------------------------------------------------- decode


@pytest.mark.parametrize("name", ["video_edge_cases/unordered.mov", "video_edge_cases/flipping_a_pancake.mkv",
                                  "lerobot_gr00t_picknplace/robot_sim.PickNPlace/videos/chunk-000/"
                                  "observation.images.ego_view/episode_000000.mp4"])
def test_decoding_several_ranges_at_once_gives_the_frames_of_each(real_data: Path, name: str) -> None:
    path = str(real_data / name)
    count = probe_video(path).num_frames
    rng = np.random.default_rng(0)
    starts = rng.integers(0, count - 1, size=6).tolist() + [0, max(count - 3, 0)]
    ranges = [(s, min(s + int(rng.integers(1, 9)), count)) for s in starts]
    ranges.append(ranges[2])  # the same clip twice, and overlapping ones, come back as asked
    everything = decode_frames(path)  # from the first frame: nothing skipped, nothing sought
    for (start, stop), frames in zip(ranges, decode_frame_ranges(path, ranges), strict=True):
        assert np.array_equal(frames, everything[start:stop]), (start, stop)
    for start in range(0, count, 7):  # single-frame seeks, with the frames before it partly skipped
        assert np.array_equal(decode_frames(path, start, start + 1)[0], everything[start]), start


def test_windows_of_real_gr00t_episodes(real_data: Path, tmp_path: Path) -> None:
    """Real teleop-like data: 256x256 h264 ego view and 44-D actions of GR00T PickNPlace, written as a dataset."""
    folder = real_data / "lerobot_gr00t_picknplace/robot_sim.PickNPlace"
    spec = SourceSpec(name="gr00t", kind="sim", format="lerobot", embodiment="gr1", fps=20.0,
                      cameras={"ego_view": CameraSpec(256, 256, DEFAULT_CODEC.to_json())},
                      arrays={"action": ArraySpec("float32", (44,))})
    actions = {}
    with DatasetWriter(tmp_path / "gr00t", "gr00t", [spec], shard_bytes=1) as writer:
        for index in (0, 1):
            steps = 40
            table = pq.read_table(folder / f"data/chunk-000/episode_00000{index}.parquet").to_pydict()
            video = folder / f"videos/chunk-000/observation.images.ego_view/episode_00000{index}.mp4"
            episode = Episode(source="gr00t", native_key=str(index), num_steps=steps,
                              frames={"ego_view": decode_frames(str(video), 0, steps)},
                              arrays={"action": np.asarray(table["action"][:steps], dtype=np.float32)})
            actions[episode.episode_id] = episode.arrays["action"]
            writer.write(episode)
        writer.close()
    config = _config((str(tmp_path / "gr00t"),), window=WindowSpec(context=1, horizon=2, frame_stride=4,
                     action_horizon=8), image_size=(128, 128), normalization="mean_std")
    stream = WindowStream(config, rank=0, world_size=1)
    dataset = Dataset.open(tmp_path / "gr00t")
    stats = dataset.info["stats"]["by_embodiment"]["gr1"]["action"]
    loader = StreamLoader(stream, num_workers=1)
    windows = 0
    for batch in loader:
        for i, episode_id in enumerate(batch["episode_id"]):
            t = int(batch["anchor"][i])
            chunk = actions[episode_id][t: t + 8]
            std = np.array(stats["std"])  # the real arm holds some joints still: those dims normalize to 0
            normalized = np.where(std > 1e-8, (chunk - np.array(stats["mean"])) / np.where(std > 1e-8, std, 1), 0)
            np.testing.assert_allclose(batch["action"][i, : len(chunk)].numpy(), normalized, rtol=1e-4, atol=1e-4)
            steps = t + np.array([-4, 0, 4, 8])
            inside = (steps >= 0) & (steps < 40)
            stored = dataset.read_episode(episode_id).frames("ego_view")[steps[inside]]
            expected = resize_frames(stored, (128, 128))
            assert np.array_equal(batch["frames/ego_view"][i].numpy()[inside], expected)
            windows += 1
    assert windows == 81  # 2 episodes x 40 anchors, padded (tail policy) to whole batches of 3
