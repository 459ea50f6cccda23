"""EgoDex adapter on a fixture in the documented layout (<task>/<N>.mp4 + <task>/<N>.hdf5 with camera
intrinsic, 4x4 joint transforms, confidences, llm_description): state slices, wrist-delta human action,
alignment after resampling, and missing or incomplete files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import assert_frames_are, cell_frames, episodes_by_start, ingest, write_video
from wamdata.media.decode import decode_frames
from wamdata.sources import adapter_for
from wamdata.sources.egodex import POINT_JOINTS, rotation_6d

STEPS = 60


def rotation_z(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((*np.shape(angle), 3, 3))
    out[..., 0, 0], out[..., 0, 1], out[..., 1, 0], out[..., 1, 1], out[..., 2, 2] = c, -s, s, c, 1
    return out


def joint_transforms(offset: float) -> np.ndarray:
    """A joint moving 1 cm a frame along x and turning 0.01 rad a frame about z."""
    t = np.arange(STEPS)
    transforms = np.tile(np.eye(4), (STEPS, 1, 1))
    transforms[:, :3, :3] = rotation_z(0.01 * t)
    transforms[:, :3, 3] = np.stack([offset + 0.01 * t, np.full(STEPS, offset), np.zeros(STEPS)], -1)
    return transforms


def write_tracking(path: Path, joints: list[str]) -> None:
    with h5py.File(path, "w") as f:
        f["camera/intrinsic"] = np.array([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]])
        for i, joint in enumerate(joints):
            f[f"transforms/{joint}"] = joint_transforms(float(i))
            if joint != "camera":
                f[f"confidences/{joint}"] = np.linspace(0.5, 1.0, STEPS)
        f.attrs["llm_description"] = "Fold the towel in half."
        f.attrs["environment"] = "kitchen"


@pytest.fixture(scope="module")
def egodex(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("egodex")
    joints = ["camera", "leftHand", "rightHand", *POINT_JOINTS]
    write_video(root / "fold_towel" / "0.mp4", cell_frames(STEPS, seed=5), 30)
    write_tracking(root / "fold_towel" / "0.hdf5", joints)
    write_tracking(root / "fold_towel" / "1.hdf5", joints)  # its video is missing
    write_video(root / "pour" / "0.mp4", cell_frames(STEPS, seed=6), 30)
    write_tracking(root / "pour" / "0.hdf5", joints[:-1])  # rightLittleFingerTip is not tracked
    return root


def test_state_human_action_and_frames(egodex: Path, tmp_path: Path) -> None:
    adapter = adapter_for("egodex", str(egodex))
    items = {item.key: item for item in adapter.work_items()}
    assert sorted(items) == ["fold_towel/0", "fold_towel/1", "pour/0"]
    with pytest.raises(FileNotFoundError, match=r"fold_towel/1.hdf5: its video 1.mp4 is missing"):
        list(adapter.read(items["fold_towel/1"]))
    with pytest.raises(ValueError, match=r"pour/0.hdf5: missing \['transforms/rightLittleFingerTip'"):
        list(adapter.read(items["pour/0"]))
    dataset, rejected = ingest(adapter, tmp_path / "out", keys=["fold_towel/0"])
    assert rejected == [] and len(dataset) == 1
    episode = dataset.read_episode(0)
    meta = episode.meta
    assert meta["num_steps"] == STEPS and meta["has_actions"] is False and meta["source_kind"] == "human_demo"
    assert meta["language"] == "Fold the towel in half." and meta["info"]["environment"] == "kitchen"
    slices = {s.name: s for s in dataset.sources["egodex"].arrays["state"].slices}
    left = episode.arrays["state"][:, slices["leftHand_pose"].start : slices["leftHand_pose"].stop]
    expected = joint_transforms(1.0)
    np.testing.assert_allclose(left[:, :3], expected[:, :3, 3], atol=1e-6)
    np.testing.assert_allclose(left[:, 3:], rotation_6d(expected[:, :3, :3]), atol=1e-6)
    tip = slices["rightLittleFingerTip_position"]
    np.testing.assert_allclose(episode.arrays["state"][:, tip.start : tip.stop], joint_transforms(12.0)[:, :3, 3],
                               atol=1e-5)
    action = episode.arrays["human_action"]
    np.testing.assert_allclose(action[:-1, :3], [[0.01, 0, 0]] * (STEPS - 1), atol=1e-6)  # left wrist moves
    np.testing.assert_allclose(action[:-1, 3:9], np.tile(rotation_6d(rotation_z(0.01)), (STEPS - 1, 1)), atol=1e-6)
    np.testing.assert_array_equal(action[-1], 0)
    np.testing.assert_allclose(episode.arrays["confidence"][:, 0], np.linspace(0.5, 1.0, STEPS), atol=1e-6)
    source = decode_frames(egodex / "fold_towel" / "0.mp4")
    assert_frames_are(episode.frames("head"), source, 0)


def test_resampled_windows_keep_poses_aligned(egodex: Path, tmp_path: Path) -> None:
    adapter = adapter_for("egodex", str(egodex), fps=10, clip_seconds=1.0, short_side=32)
    dataset, _ = ingest(adapter, tmp_path / "out", keys=["fold_towel/0"])
    episodes = episodes_by_start(dataset)
    assert [e.meta["num_steps"] for e in episodes] == [10, 10]
    second = episodes[1]
    # 10 fps from 30: steps are source frames 30, 33, ..., 57; the wrist moves 3 cm a step.
    np.testing.assert_allclose(second.arrays["state"][:, 9], 1.0 + 0.01 * np.arange(30, 60, 3), atol=1e-6)
    np.testing.assert_allclose(second.arrays["human_action"][:-1, 0], 0.03, atol=1e-6)
    assert second.meta["info"]["camera_intrinsic"][0] == [25.0, 0.0, 16.0]  # scaled with the frames
    assert second.frames("head").shape == (10, 32, 32, 3)


def blob_centroid(frame: np.ndarray) -> np.ndarray:
    """(x, y) of the bright square's centre, in pixel coordinates from the top-left corner."""
    grey = frame.astype(np.float64).mean(-1)
    weight = np.clip(grey - 100, 0, None)
    ys, xs = np.mgrid[0 : grey.shape[0], 0 : grey.shape[1]] + 0.5
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_intrinsic_follows_the_crop_or_pad_and_the_resize(fit: str, tmp_path: Path) -> None:
    """A 96x64 video of a bright square where the file's camera projects a 3-D point, brought to 1:1 at short
    side 32: the stored intrinsic projects that point where the square is in the stored frames."""
    intrinsic = np.array([[50.0, 0, 48], [0, 50.0, 32], [0, 0, 1]])
    point = np.array([0.44, -0.24, 1.0])  # projects to (70, 20) in the 96x64 frame: inside the 1:1 crop
    x, y = (intrinsic @ point)[:2]
    frames = np.full((30, 64, 96, 3), 30, np.uint8)
    frames[:, round(y) - 6 : round(y) + 6, round(x) - 6 : round(x) + 6] = 220
    write_video(tmp_path / "egodex" / "task" / "0.mp4", frames, 30)
    write_tracking(tmp_path / "egodex" / "task" / "0.hdf5", ["camera", "leftHand", "rightHand", *POINT_JOINTS])
    with h5py.File(tmp_path / "egodex" / "task" / "0.hdf5", "r+") as f:
        f["camera/intrinsic"][...] = intrinsic
    adapter = adapter_for("egodex", str(tmp_path / "egodex"), short_side=32, aspect="1:1", fit=fit)
    dataset, _ = ingest(adapter, tmp_path / "out")
    episode = dataset.read_episode(0)
    stored = np.asarray(episode.meta["info"]["camera_intrinsic"])
    assert episode.frames("head").shape[1:3] == (32, 32)
    projected = (stored @ point)[:2]
    # crop: columns 16..80 kept, halved: (27, 10); pad: a third, 21 rows of picture from row 5: (23.3, 11.6)
    assert projected == pytest.approx((27.0, 10.0) if fit == "crop" else (70 / 3, 5 + 20 * 21 / 64), abs=1e-6)
    for frame in episode.frames("head")[::10]:
        np.testing.assert_allclose(blob_centroid(frame), projected, atol=0.3)
