"""EgoMimic adapter on fixtures in the documented robomimic-style layout: the hand and the robot variant
as two sources, future-position chunks, robomimic split masks, multiple cameras, resampling, bad demos."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import assert_frames_are, cell_frames, episodes_by_start, ingest
from wamdata.media.frames import FrameFit
from wamdata.sources import adapter_for
from wamdata.sources.base import DefaultChosen


def demo_arrays(steps: int, width: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ee = np.cumsum(rng.normal(0, 0.01, (steps, width)), 0)
    future = np.stack([ee[np.minimum(np.arange(t, t + 100), steps - 1)] for t in range(steps)])
    return {"obs/ee_pose": ee, "actions_xyz_act": future}


@pytest.fixture(scope="module")
def egomimic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("egomimic")
    with h5py.File(root / "hand_stacking.hdf5", "w") as f:
        for i in range(2):
            demo = f.create_group(f"data/demo_{i}")
            demo["obs/front_img_1"] = cell_frames(40, 48, 64, seed=10 + i)
            for name, array in demo_arrays(40, 6, seed=i).items():
                demo[name] = array
        f["mask/train"] = np.array([b"demo_0"])
        f["mask/valid"] = np.array([b"demo_1"])
    with h5py.File(root / "robot_stacking.hdf5", "w") as f:
        for i, steps in enumerate((30, 30)):
            demo = f.create_group(f"data/demo_{i}")
            demo["obs/front_img_1"] = cell_frames(steps, 48, 64, seed=20 + i)
            demo["obs/right_wrist_img"] = cell_frames(steps, 48, 64, seed=30 + i)
            demo["obs/joint_positions"] = np.linspace(0, 1, steps * 7).reshape(steps, 7)
            demo["actions_joints_act"] = np.tile(demo["obs/joint_positions"][()][:, None], (1, 100, 1))
            for name, array in demo_arrays(steps, 3, seed=5 + i).items():
                demo[name] = array
        del f["data/demo_1/obs/ee_pose"]
        f["data/demo_1/obs/ee_pose"] = np.zeros((29, 3))  # one step short of its images
    return root


def test_hand_and_robot_variants(egomimic: Path, tmp_path: Path) -> None:
    adapter = adapter_for("egomimic", str(egomimic))
    specs = {s.name: s for s in adapter.specs()}
    assert sorted(specs) == ["egomimic_hand", "egomimic_robot"]
    assert (specs["egomimic_hand"].kind, specs["egomimic_robot"].kind) == ("human_demo", "teleop")
    assert specs["egomimic_hand"].arrays["human_action"].shape == (100, 6)
    assert sorted(specs["egomimic_robot"].cameras) == ["front_img_1", "right_wrist_img"]
    items = {item.key: item for item in adapter.work_items()}
    with pytest.raises(ValueError, match=r"robot_stacking.hdf5: data/demo_1: streams have unequal lengths: .*state=29"):
        list(adapter.read(items.pop("robot_stacking.hdf5/demo_1")))
    dataset, rejected = ingest(adapter, tmp_path / "out", keys=list(items))
    assert rejected == [] and len(dataset) == 3
    episodes = {e.meta["native_key"]: e for e in (dataset.read_episode(i) for i in range(3))}
    hand = episodes["hand_stacking.hdf5/demo_1#all"]
    assert hand.meta["has_actions"] is False and hand.meta["split"] == "val" and hand.meta["num_steps"] == 40
    with h5py.File(egomimic / "hand_stacking.hdf5") as f:
        np.testing.assert_allclose(hand.arrays["human_action"], f["data/demo_1/actions_xyz_act"][()], atol=1e-6)
        hand_images = f["data/demo_1/obs/front_img_1"][()]
    assert episodes["hand_stacking.hdf5/demo_0#all"].meta["split"] == "train"
    assert_frames_are(hand.frames("front_img_1"), hand_images, 0)
    robot = episodes["robot_stacking.hdf5/demo_0#all"]
    assert robot.meta["has_actions"] is True and robot.arrays["action"].shape == (30, 100, 7)
    with h5py.File(egomimic / "robot_stacking.hdf5") as f:
        wrist = f["data/demo_0/obs/right_wrist_img"][()]
        np.testing.assert_allclose(robot.arrays["joint_positions"], f["data/demo_0/obs/joint_positions"][()], atol=1e-6)
    assert_frames_are(robot.frames("right_wrist_img"), wrist, 0)


def test_resampled_windows_take_arrays_at_their_steps(egomimic: Path, tmp_path: Path) -> None:
    adapter = adapter_for("egomimic", str(egomimic), fps=10, clip_seconds=0.5, short_side=24)
    dataset, _ = ingest(adapter, tmp_path / "out", keys=["robot_stacking.hdf5/demo_0"])
    episodes = episodes_by_start(dataset)
    assert [e.meta["num_steps"] for e in episodes] == [5, 5]  # 30 steps at 30 fps: two 0.5 s windows
    with h5py.File(egomimic / "robot_stacking.hdf5") as f:
        joints = f["data/demo_0/obs/joint_positions"][()]
    np.testing.assert_allclose(episodes[1].arrays["joint_positions"], joints[15:30:3], atol=1e-6)
    assert episodes[1].frames("right_wrist_img").shape == (5, 24, 32, 3)


def test_cameras_of_several_sizes_go_through_one_fit_each(tmp_path: Path) -> None:
    """Robot demos whose wrist camera is 64x48 in one and 32x32 in the other: the wrist camera is 32x24 (4:3,
    the first demo's, the largest no demo is enlarged to), the square one centre-cropped; the front camera,
    the same size in both, keeps it."""
    with h5py.File(tmp_path / "robot.hdf5", "w") as f:
        for i, wrist_size in enumerate(((48, 64), (32, 32))):
            demo = f.create_group(f"data/demo_{i}")
            demo["obs/front_img_1"] = cell_frames(12, 48, 64, seed=40 + i)
            demo["obs/right_wrist_img"] = cell_frames(12, 64, 64, seed=50 + i)[:, : wrist_size[0], : wrist_size[1]]
            demo["obs/joint_positions"] = np.zeros((12, 7))
            demo["actions_joints_act"] = np.zeros((12, 100, 7))
            for name, array in demo_arrays(12, 3, seed=i).items():
                demo[name] = array
    # 32x24 frames of 8-pixel cells: the default crf 20 stores them at ~34 dB, under assert_frames_are's 35.
    chosen = "camera 'right_wrist_img': the videos are 64x48, 32x32; every clip is 32x24"
    with pytest.warns(DefaultChosen, match=chosen):
        adapter = adapter_for("egomimic", str(tmp_path / "robot.hdf5"), video={"pix_fmt": "yuv444p", "crf": 10})
        (spec,) = adapter.specs()
    assert (spec.cameras["front_img_1"].height, spec.cameras["front_img_1"].width) == (48, 64)
    assert (spec.cameras["right_wrist_img"].height, spec.cameras["right_wrist_img"].width) == (24, 32)
    dataset, rejected = ingest(adapter, tmp_path / "out")
    assert rejected == [] and len(dataset) == 2
    fit = FrameFit(24, 32)
    with h5py.File(tmp_path / "robot.hdf5") as f:
        for i in range(2):
            episode = dataset.read_episode(f"{dataset.row(i)['episode_id']}")
            demo = episode.meta["info"]["demo"]
            wrist = np.stack([fit(rgb) for rgb in f[f"data/{demo}/obs/right_wrist_img"][()]])
            assert_frames_are(episode.frames("right_wrist_img"), wrist, 0)
            assert_frames_are(episode.frames("front_img_1"), f[f"data/{demo}/obs/front_img_1"][()], 0)
