"""Formats with no real sample here (ManiSkill3, RoboMIND, robomimic-converted, LeRobot v3.0): fixtures built
in the documented layouts from toy-world episodes, each with one case of the format's documented quirk."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import rows_by_native_key
from wamdata.format.reader import Dataset
from wamdata.format.validate import validate
from wamdata.ingest import ingest
from wamdata.media.codec import VideoCodec, encode_video, psnr
from wamdata.toy.export import write_lerobot_v21
from wamdata.toy.world import generate_episode

MIN_PSNR_DB = 35.0

pytestmark = pytest.mark.usefixtures("local_ray")


def toy(seed: int, max_steps: int = 12):  # noqa: ANN201 - a ToyEpisode
    return generate_episode(seed, image_size=64, max_steps=max_steps)


# ManiSkill3 ---------------------------------------------------------------------------------------------------


def write_maniskill(path: Path, seeds: list[int], with_obs: bool, elapsed_steps_error: int | None = None) -> None:
    episodes = []
    with h5py.File(path, "w") as f:
        for episode_id, seed in enumerate(seeds):
            ep = toy(seed)
            steps = len(ep.actions)
            traj = f.create_group(f"traj_{episode_id}")
            traj["actions"] = ep.actions
            traj["terminated"] = np.zeros(steps, bool)
            traj["truncated"] = np.zeros(steps, bool)
            traj["success"] = np.arange(steps) == steps - 1
            states = np.concatenate([ep.states, ep.states[-1:]])
            traj["env_states/actors/cube"] = states[:, :3].astype(np.float32)
            traj["env_states/articulations/panda"] = states.astype(np.float32)
            if with_obs:
                traj["obs/sensor_data/base_camera/rgb"] = np.concatenate([ep.frames, ep.frames[-1:]])
                traj["obs/agent/qpos"] = states[:, :4].astype(np.float32)
                traj["obs/agent/qvel"] = states[:, 4:].astype(np.float32)
            elapsed = steps + 1 if episode_id == elapsed_steps_error else steps
            episodes.append({"episode_id": episode_id, "episode_seed": seed, "control_mode": "pd_ee_delta_pos",
                             "elapsed_steps": elapsed, "reset_kwargs": {"seed": seed}, "success": True})
    meta = {"env_info": {"env_id": "PushCube-v1", "max_episode_steps": 50,
                         "env_kwargs": {"obs_mode": "rgb" if with_obs else "none", "robot_uids": "panda",
                                        "control_mode": "pd_ee_delta_pos"}},
            "episodes": episodes}
    path.with_suffix(".json").write_text(json.dumps(meta))


def test_maniskill_trajectories_with_and_without_obs(tmp_path: Path) -> None:
    root = tmp_path / "maniskill"
    root.mkdir()
    write_maniskill(root / "trajectory.rgb.pd_ee_delta_pos.physx_cpu.h5", [1, 2], with_obs=True,
                    elapsed_steps_error=1)
    write_maniskill(root / "trajectory.none.pd_ee_delta_pos.physx_cpu.h5", [3], with_obs=False)  # quirk: no obs
    result = ingest("maniskill", str(root), tmp_path / "out", progress=False)
    assert [r["key"] for r in result.quarantined] == ["trajectory.rgb.pd_ee_delta_pos.physx_cpu.h5:traj_1"]
    assert "elapsed_steps" in result.quarantined[0]["reason"]
    dataset = Dataset.open(tmp_path / "out")
    keys = rows_by_native_key(dataset)
    with_obs = dataset.read_episode(keys["trajectory.rgb.pd_ee_delta_pos.physx_cpu.h5:traj_0"])
    ep = toy(1)
    np.testing.assert_array_equal(with_obs.arrays["action"], ep.actions)
    np.testing.assert_array_equal(with_obs.arrays["state"], ep.states.astype(np.float32))
    assert with_obs.meta["cameras"] == ["base_camera"]
    frames = with_obs.frames("base_camera")
    assert len(frames) == len(ep.actions)
    assert psnr(frames, ep.frames) >= MIN_PSNR_DB
    assert with_obs.meta["info"]["final_sim_state"][-6:] == pytest.approx(ep.states[-1].tolist())
    without_obs = dataset.read_episode(keys["trajectory.none.pd_ee_delta_pos.physx_cpu.h5:traj_0"])
    assert without_obs.meta["cameras"] == [] and "state" not in without_obs.arrays
    np.testing.assert_array_equal(without_obs.arrays["action"], toy(3).actions)
    assert dataset.sources["pushcube_v1"].embodiment == "panda"
    assert validate(tmp_path / "out", progress=False) == []


# RoboMIND -----------------------------------------------------------------------------------------------------


def jpeg_steps(frames: np.ndarray) -> list[np.ndarray]:
    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
        out.append(np.frombuffer(buffer.getvalue(), np.uint8))
    return out


def write_robomind(root: Path, robot_type: str, task: str, episode: str, seed: int, arms: tuple[str, ...],
                   follower: str, cameras: tuple[str, ...], short_stream: bool = False) -> Path:
    path = root / "benchmark1_0_release" / robot_type / task / "success_episodes" / "train" / episode / "data"
    path.mkdir(parents=True)
    ep = toy(seed)
    steps = len(ep.actions)
    with h5py.File(path / "trajectory.hdf5", "w") as f:
        for arm in arms:
            if follower != "franka":
                f[f"master/joint_position{arm}"] = np.concatenate([ep.actions, ep.actions[:, :1]], axis=1)
            f[f"{follower}/joint_position{arm}"] = ep.states[:, :4]
            f[f"{follower}/end_effector{arm}"] = ep.states[: steps - 1 if short_stream else steps, 4:]
        for camera in cameras:
            data = f.create_dataset(f"observations/rgb_images/{camera}", (steps,), dtype=h5py.vlen_dtype(np.uint8))
            for i, jpeg in enumerate(jpeg_steps(ep.frames)):
                data[i] = jpeg
            f[f"observations/depth_images/{camera}"] = (ep.frames[..., 0].astype(np.uint16) * 10)
    return path / "trajectory.hdf5"


def test_robomind_dual_arm_sim_and_unequal_streams(tmp_path: Path) -> None:
    root = tmp_path / "robomind"
    agilex = write_robomind(root, "h5_agilex_3rgb", "pick_apple", "ep_001", 5, ("_left", "_right"), "puppet",
                            ("camera_front", "camera_left_wrist"))
    sim = write_robomind(root, "h5_sim_franka_3rgb", "stack_blocks", "ep_002", 6, ("",), "franka",
                         ("camera_top",))
    write_robomind(root, "h5_franka_1rgb", "open_drawer", "ep_003", 7, ("",), "puppet", ("camera_top",),
                   short_stream=True)  # quirk: end_effector one step shorter than the rest
    result = ingest("robomind", str(root), tmp_path / "out", progress=False)
    assert [r["key"] for r in result.quarantined] == [
        "benchmark1_0_release/h5_franka_1rgb/open_drawer/success_episodes/train/ep_003"]
    assert "unequal lengths" in result.quarantined[0]["reason"] and "puppet/end_effector=11" in (
        result.quarantined[0]["reason"])
    dataset = Dataset.open(tmp_path / "out")
    assert sorted(set(dataset.episodes.column("source").to_pylist())) == ["agilex_3rgb", "sim_franka_3rgb"]
    spec = dataset.sources["agilex_3rgb"]
    assert [s.name for s in spec.arrays["action"].slices] == ["left_joint_position", "right_joint_position"]
    keys = rows_by_native_key(dataset)
    dual = dataset.read_episode(keys["benchmark1_0_release/h5_agilex_3rgb/pick_apple/success_episodes/train/ep_001"])
    with h5py.File(agilex) as f:
        np.testing.assert_array_equal(dual.arrays["action"], np.concatenate(
            [f["master/joint_position_left"][()], f["master/joint_position_right"][()]], axis=1))
        np.testing.assert_array_equal(dual.arrays["state"], np.concatenate(
            [f["puppet/joint_position_left"][()], f["puppet/joint_position_right"][()]], axis=1))
        np.testing.assert_array_equal(dual.arrays["puppet_end_effector_right"], f["puppet/end_effector_right"][()])
        np.testing.assert_array_equal(dual.arrays["depth_camera_front"], f["observations/depth_images/camera_front"])
        source = np.stack([np.asarray(Image.open(io.BytesIO(j.tobytes())))
                           for j in f["observations/rgb_images/camera_front"]])
    assert dual.meta["language"] == "pick apple"
    frames = dual.frames("camera_front")
    assert len(frames) == dual.meta["num_steps"] and psnr(frames, source) >= MIN_PSNR_DB
    simulated = dataset.read_episode(
        keys["benchmark1_0_release/h5_sim_franka_3rgb/stack_blocks/success_episodes/train/ep_002"])
    assert dataset.sources["sim_franka_3rgb"].kind == "sim"
    with h5py.File(sim) as f:
        np.testing.assert_array_equal(simulated.arrays["state"], f["franka/joint_position"][()])
    assert validate(tmp_path / "out", progress=False) == []


# robomimic-converted (LIBERO, RoboCasa) -----------------------------------------------------------------------


def write_converted(path: Path, env_args: dict, seeds: list[int], camera_key: str, upside_down: bool,
                    file_attrs: dict | None = None, ep_meta: dict | None = None) -> None:
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(env_args)
        for key, value in (file_attrs or {}).items():
            data.attrs[key] = value
        for i, seed in enumerate(seeds):
            ep = toy(seed)
            demo = data.create_group(f"demo_{i}")
            demo["actions"] = np.concatenate([ep.actions, np.zeros((len(ep.actions), 5))], axis=1)
            demo["rewards"] = np.zeros(len(ep.actions))
            demo["dones"] = np.arange(len(ep.actions)) == len(ep.actions) - 1
            demo["states"] = ep.states.astype(np.float64)
            demo[f"obs/{camera_key}"] = ep.frames[:, ::-1, ::-1] if upside_down else ep.frames
            demo["obs/robot0_eef_pos"] = ep.states[:, :3]
            demo["obs/robot0_gripper_qpos"] = ep.states[:, 3:5]
            demo[f"next_obs/{camera_key}"] = demo[f"obs/{camera_key}"][()]
            if ep_meta is not None:
                demo.attrs["ep_meta"] = json.dumps(ep_meta)


def test_robomimic_converted_libero_upside_down_and_robocasa_language(tmp_path: Path) -> None:
    root = tmp_path / "converted"
    root.mkdir()
    libero_args = {"env_name": "LIBERO_Kitchen_Tabletop_Manipulation", "type": 1,
                   "env_kwargs": {"robots": ["Panda"], "controller_configs": {"type": "OSC_POSE"},
                                  "control_freq": 20, "bddl_file_name": "kitchen_scene1_open_drawer.bddl"}}
    write_converted(root / "libero_open_drawer_demo.hdf5", libero_args, [10, 11], "agentview_rgb",
                    upside_down=True,  # quirk: LIBERO stores its camera images upside down
                    file_attrs={"problem_info": json.dumps({"language_instruction": "open the top drawer"})})
    robocasa_args = {"env_name": "PnPCounterToCab", "type": 1,
                     "env_kwargs": {"robots": ["PandaOmron"], "controller_configs": {"type": "OSC_POSE"}}}
    write_converted(root / "robocasa_pnp.hdf5", robocasa_args, [12], "robot0_agentview_left_image",
                    upside_down=False, ep_meta={"lang": "pick the apple from the counter and place it in the cabinet"})
    result = ingest("robomimic", str(root), tmp_path / "out", progress=False)
    assert result.quarantined == []
    dataset = Dataset.open(tmp_path / "out")
    keys = rows_by_native_key(dataset)
    libero = dataset.read_episode(keys["libero_open_drawer_demo.hdf5:demo_1"])
    ep = toy(11)
    assert libero.meta["language"] == "open the top drawer"
    assert libero.meta["cameras"] == ["agentview"]
    assert psnr(libero.frames("agentview"), ep.frames) >= MIN_PSNR_DB  # upright again
    assert "rotated 180 degrees" in libero.meta["info"]["frames"]
    np.testing.assert_array_equal(libero.arrays["state"], ep.states[:, :5])
    assert [(s.name, s.start, s.stop) for s in dataset.sources["libero_kitchen_tabletop_manipulation"]
            .arrays["state"].slices] == [("robot0_eef_pos", 0, 3), ("robot0_gripper_qpos", 3, 5)]
    np.testing.assert_array_equal(libero.arrays["sim_state"], ep.states)
    np.testing.assert_array_equal(libero.arrays["done"][-1:], [True])
    robocasa = dataset.read_episode(keys["robocasa_pnp.hdf5:demo_0"])
    assert robocasa.meta["language"] == "pick the apple from the counter and place it in the cabinet"
    assert psnr(robocasa.frames("robot0_agentview_left"), toy(12).frames) >= MIN_PSNR_DB
    assert dataset.sources["pnpcountertocab"].embodiment == "pandaomron"
    assert validate(tmp_path / "out", progress=False) == []


# LeRobot v3.0 -------------------------------------------------------------------------------------------------


def write_lerobot_v3(root: Path, seeds: list[int], fps: float = 10.0) -> list:
    """meta/info.json (v3.0), meta/tasks.parquet, meta/episodes/chunk-000/file-000.parquet, and all episodes in
    one data file and one video file (the v3 quirk: locate each by index range and timestamp range)."""
    episodes = [toy(seed) for seed in seeds]
    tasks = list(dict.fromkeys(ep.language for ep in episodes))
    rows, meta_rows, frames, index = [], [], [], 0
    for episode_index, ep in enumerate(episodes):
        steps = len(ep.actions)
        for t in range(steps):
            rows.append({"observation.state": ep.states[t].tolist(), "action": ep.actions[t].tolist(),
                         "timestamp": t / fps, "frame_index": t, "episode_index": episode_index,
                         "index": index + t, "task_index": tasks.index(ep.language)})
        meta_rows.append({
            "episode_index": episode_index, "tasks": [ep.language], "length": steps,
            "data/chunk_index": 0, "data/file_index": 0,
            "dataset_from_index": index, "dataset_to_index": index + steps,
            "videos/observation.images.front/chunk_index": 0, "videos/observation.images.front/file_index": 0,
            "videos/observation.images.front/from_timestamp": index / fps,
            "videos/observation.images.front/to_timestamp": (index + steps) / fps,
        })
        frames.append(ep.frames)
        index += steps
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "chunk-000" / "file-000.parquet")
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(meta_rows), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": list(range(len(tasks))), "task": tasks}), root / "meta" / "tasks.parquet")
    video = root / "videos" / "observation.images.front" / "chunk-000" / "file-000.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(encode_video(np.concatenate(frames), fps, VideoCodec(pix_fmt="yuv444p")))
    info = {"codebase_version": "v3.0", "robot_type": "toy_pusher", "fps": fps, "total_episodes": len(episodes),
            "total_frames": index, "total_tasks": len(tasks), "chunks_size": 1000,
            "splits": {"train": f"0:{len(episodes) - 1}", "val": f"{len(episodes) - 1}:{len(episodes)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {
                "observation.images.front": {"dtype": "video", "shape": [64, 64, 3],
                                             "names": ["height", "width", "channels"]},
                "observation.state": {"dtype": "float32", "shape": [6], "names": None},
                "action": {"dtype": "float32", "shape": [2], "names": None},
                "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                "index": {"dtype": "int64", "shape": [1], "names": None},
                "task_index": {"dtype": "int64", "shape": [1], "names": None}}}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return episodes


def test_lerobot_v3_many_episodes_per_file(tmp_path: Path) -> None:
    root = tmp_path / "toy_v3"
    episodes = write_lerobot_v3(root, [20, 21, 22])
    result = ingest("lerobot", str(root), tmp_path / "out", progress=False)
    assert result.quarantined == []
    dataset = Dataset.open(tmp_path / "out")
    keys = rows_by_native_key(dataset)
    for index, ep in enumerate(episodes):
        stored = dataset.read_episode(keys[f"toy_v3/episode_{index:06d}"])
        assert stored.meta["num_steps"] == len(ep.actions)
        np.testing.assert_array_equal(stored.arrays["action"], ep.actions)
        np.testing.assert_array_equal(stored.arrays["state"], ep.states)
        assert stored.meta["language"] == ep.language
        assert stored.meta["split"] == ("val" if index == 2 else "train")
        frames = stored.frames("front")
        assert len(frames) == len(ep.actions) and psnr(frames, ep.frames) >= MIN_PSNR_DB
    assert validate(tmp_path / "out", progress=False) == []


def test_lerobot_v21_written_from_the_toy_world(tmp_path: Path) -> None:
    episodes = [toy(seed) for seed in (30, 31)]
    write_lerobot_v21(episodes, tmp_path / "toy_v21", fps=10.0, codec=VideoCodec(pix_fmt="yuv444p"))
    ingest("lerobot", str(tmp_path / "toy_v21"), tmp_path / "out", progress=False)
    dataset = Dataset.open(tmp_path / "out")
    for index, ep in enumerate(episodes):
        stored = dataset.read_episode(rows_by_native_key(dataset)[f"toy_v21/episode_{index:06d}"])
        np.testing.assert_array_equal(stored.arrays["action"], ep.actions)
        assert psnr(stored.frames("front"), ep.frames) >= MIN_PSNR_DB
