"""Shards: readable by plain webdataset and tar, deterministic, random access by offsets, atomic writes."""

from __future__ import annotations

import filecmp
import io
import json
import subprocess
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from conftest import small_demo_config
from wamdata.format.reader import Dataset
from wamdata.format.schema import ArraySpec, CameraSpec, Episode, SchemaError, SourceSpec
from wamdata.format.shards import iter_samples
from wamdata.format.writer import DatasetWriter
from wamdata.media.codec import DEFAULT_CODEC, psnr
from wamdata.media.decode import decode_frames
from wamdata.sources.toyworld import ToyWorldSource
from wamdata.toy import world as toyworld
from wamdata.toy.demo import run_demo


def shard_paths(root: Path) -> list[Path]:
    return sorted(root.glob("shards/*/shard-*.tar"))


def test_plain_webdataset_reads_the_demo_shards(demo_dataset: Path) -> None:
    urls = [str(p) for p in shard_paths(demo_dataset)]
    assert len(urls) >= 4
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    episodes = pq.read_table(demo_dataset / "episodes.parquet").to_pylist()
    assert [s["__key__"] for s in samples] == [e["episode_id"] for e in episodes]
    for sample, row in zip(samples, episodes, strict=True):
        meta = sample["meta.json"]
        assert meta["episode_id"] == row["episode_id"] and meta["num_steps"] == row["num_steps"]
        if row["has_actions"]:
            seed = meta["info"]["seed"]
            truth = toyworld.generate_episode(seed, "robot", 64, 64, meta["info"]["noise"])
            np.testing.assert_array_equal(sample["action.npy"], truth.actions)
            np.testing.assert_array_equal(sample["state.npy"], truth.states)
            assert sample["action.npy"].dtype == np.float32
        else:
            assert "action.npy" not in sample and "state.npy" not in sample
        frames = decode_frames(sample["front.mp4"])
        assert frames.shape == (row["num_steps"], 64, 64, 3)


def test_tar_lists_the_members(demo_dataset: Path) -> None:
    for source, members in (("toy_robot", ("meta.json", "action.npy", "state.npy", "front.mp4")),
                            ("toy_human", ("meta.json", "front.mp4"))):
        shard = demo_dataset / "shards" / source / "shard-000000.tar"
        listing = subprocess.run(["tar", "-tf", str(shard)], check=True, capture_output=True, text=True)
        names = listing.stdout.split()
        keys = list(dict.fromkeys(n.split(".", 1)[0] for n in names))
        assert names == [f"{key}.{m}" for key in keys for m in members]
        assert len(keys) >= 2


def _write_small(root: Path) -> None:
    config = small_demo_config()
    config["sources"]["toy_robot"]["episodes"] = 8
    config["sources"]["toy_human"]["episodes"] = 4
    run_demo(config, out=root, progress=False)


def test_same_episodes_give_byte_identical_datasets(tmp_path: Path) -> None:
    _write_small(tmp_path / "a")
    _write_small(tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) >= 4
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files_a, shallow=False)
    assert mismatch == [] and errors == []


def test_read_one_episode_by_offsets_equals_the_tar_scan(demo_dataset: Path) -> None:
    dataset = Dataset.open(demo_dataset)
    scanned = {key: members for path in shard_paths(demo_dataset) for key, members in iter_samples(str(path))}
    for index in (0, len(dataset) // 2, len(dataset) - 1):
        row = dataset.row(index)
        episode = dataset.read_episode(row["episode_id"])
        members = scanned[row["episode_id"]]
        assert json.loads(members["meta.json"]) == episode.meta
        assert episode.videos["front"] == members["front.mp4"]
        for name, array in episode.arrays.items():
            np.testing.assert_array_equal(array, np.load(io.BytesIO(members[f"{name}.npy"])))
        window = episode.frames("front", 5, 9)
        np.testing.assert_array_equal(window, decode_frames(members["front.mp4"])[5:9])


def test_reading_through_fsspec_urls(demo_dataset: Path) -> None:
    memory = fsspec.filesystem("memory")
    for path in demo_dataset.rglob("*"):
        if path.is_file():
            memory.pipe(f"/copy/{path.relative_to(demo_dataset).as_posix()}", path.read_bytes())
    local = Dataset.open(demo_dataset)
    for url in (f"file://{demo_dataset}", "memory://copy"):
        remote = Dataset.open(url)
        assert len(remote) == len(local)
        a, b = remote.read_episode(3), local.read_episode(3)
        assert a.meta == b.meta and a.videos == b.videos


def test_shards_respect_the_target_size(demo_dataset: Path) -> None:
    config = small_demo_config()
    for path in shard_paths(demo_dataset):
        samples = sum(1 for _ in iter_samples(str(path)))
        assert path.stat().st_size <= config["shard_bytes"] or samples == 1


def test_failed_write_keeps_the_previous_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _write_small(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    config = small_demo_config()
    source = ToyWorldSource("", config=config)
    spec = next(s for s in source.specs() if s.name == "toy_robot")
    first_item = source.work_items()[0]
    good = next(source.read(first_item))
    bad = next(source.read(first_item))
    bad.arrays["action"] = bad.arrays["action"].astype(np.float64)
    with pytest.raises(SchemaError, match=r"array 'action'.*float64.*expected float32"), \
            DatasetWriter(root, "broken", [spec], shard_bytes=10_000) as writer:
        writer.write(good)
        writer.write(bad)
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".*partial*"))


def test_real_gr00t_episode_round_trips_through_the_writer(real_data: Path, tmp_path: Path) -> None:
    """A real LeRobot episode (256x256 h264 video + 44-D float64 state/action) written and read back."""
    root = real_data / "lerobot_gr00t_picknplace/robot_sim.PickNPlace"
    video_path = root / "videos/chunk-000/observation.images.ego_view/episode_000001.mp4"
    table = pq.read_table(root / "data/chunk-000/episode_000001.parquet")
    action = np.stack(table.column("action").to_numpy(zero_copy_only=False))
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
    source_frames = decode_frames(video_path)
    assert len(source_frames) == len(action) == table.num_rows
    spec = SourceSpec(name="gr00t", kind="sim", format="test", embodiment="gr1_arms_only", fps=20.0,
                      cameras={"ego_view": CameraSpec(256, 256, DEFAULT_CODEC.to_json())},
                      arrays={"action": ArraySpec("float64", (44,)), "state": ArraySpec("float64", (44,))})
    with DatasetWriter(tmp_path / "ds", "gr00t", [spec]) as writer:
        writer.write(Episode("gr00t", "episode_000001", len(action), frames={"ego_view": source_frames},
                             arrays={"action": action, "state": state}))
        writer.close()
    episode = Dataset.open(tmp_path / "ds").read_episode(0)
    frames = episode.frames("ego_view")
    assert frames.shape == source_frames.shape
    assert psnr(frames, source_frames) >= 35.0
    np.testing.assert_array_equal(episode.arrays["action"], action)
    np.testing.assert_array_equal(episode.arrays["state"], state)
