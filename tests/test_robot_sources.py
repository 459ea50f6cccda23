"""The robot source adapters on the one base: typed options (an unknown or mistyped one is an error naming it, the
format and the known ones, from Python and through ingest), options that take effect, rates the adapter chose
said as DefaultChosen, and bad metadata as an error naming the file and the reason."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_ingest_fixtures import toy, write_maniskill, write_robomind

from conftest import BRIDGE_RLDS
from wamdata.format.config import ConfigError
from wamdata.ingest import ingest
from wamdata.ingest.pipeline import read_item
from wamdata.sources import InputWarning, adapter_for
from wamdata.sources.base import DefaultChosen, InputError, common_length
from wamdata.sources.toyworld import ToyWorldSource, load_config

GR00T = Path("lerobot_gr00t_picknplace/robot_sim.PickNPlace")
MANISKILL_FILE = "trajectory.rgb.pd_ee_delta_pos.physx_cpu.h5"
KNOWN_OPTIONS = {"robomimic": ["fps", "kind"], "robomind": ["kind"], "maniskill": ["fps", "kind"],
                 "lerobot": ["embodiment", "kind"], "oxe_rlds": ["dataset", "fps"], "toyworld": ["config"]}
# one option of each format given a value of the wrong type, and what the error says the value must be
MISTYPED = {"robomimic": ("kind", "robot", "must be one of"), "robomind": ("kind", 3, "must be one of"),
            "maniskill": ("fps", "fast", "must be a number"), "lerobot": ("embodiment", 7, "must be text"),
            "oxe_rlds": ("dataset", ["bridge"], "must be text"),
            "toyworld": ("config", "demo.yaml", "must be a mapping")}


@pytest.fixture(scope="module")
def inputs(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One input of each robot format: the real samples, and the documented layouts where none could be had."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "maniskill").mkdir()
    write_maniskill(root / "maniskill" / MANISKILL_FILE, [1, 2], with_obs=True)
    write_robomind(root / "robomind", "h5_agilex_3rgb", "pick_apple", "ep_001", 5, ("_left", "_right"), "puppet",
                   ("camera_front",))
    return {"robomimic": real_data / "robosuite_v1_demos", "robomind": root / "robomind",
            "maniskill": root / "maniskill", "lerobot": real_data / GR00T, "oxe_rlds": real_data / BRIDGE_RLDS}


def input_of(format: str, inputs: dict[str, Path]) -> str:
    return str(inputs[format]) if format in inputs else ""  # toyworld: "" is the packaged demo config


# Options --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", sorted(KNOWN_OPTIONS))
def test_an_unknown_option_names_itself_the_format_and_the_known_ones(format: str, inputs: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    known = KNOWN_OPTIONS[format]
    typo = known[-1] + known[-1][-1]  # "kind" -> "kindd"
    with pytest.raises(ConfigError) as from_python:
        adapter_for(format, input_of(format, inputs), **{typo: "x"})
    with pytest.raises(ConfigError) as from_ingest:
        ingest(format, input_of(format, inputs), tmp_path / "out", progress=False, **{typo: "x"})
    for raised in (from_python, from_ingest):
        assert str(raised.value) == (f"source format {format!r}: unknown option {typo!r} (did you mean {known[-1]!r}?)"
                                     f"; known options: {', '.join(known)}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("format", sorted(MISTYPED))
def test_a_mistyped_option_names_itself_and_the_type_it_needs(format: str, inputs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    name, value, needs = MISTYPED[format]
    with pytest.raises(ConfigError) as from_python:
        adapter_for(format, input_of(format, inputs), **{name: value})
    with pytest.raises(ConfigError) as from_ingest:
        ingest(format, input_of(format, inputs), tmp_path / "out", progress=False, **{name: value})
    for raised in (from_python, from_ingest):
        assert str(raised.value).startswith(f"source format {format!r}: option {name!r}: {needs}")
    assert not (tmp_path / "out").exists()


def test_options_that_are_set_reach_the_specs_and_the_run_record(inputs: dict[str, Path]) -> None:
    robosuite = adapter_for("robomimic", str(inputs["robomimic"]), kind="teleop", fps=15)
    assert {(s.kind, s.fps) for s in robosuite.specs()} == {("teleop", 15.0)}
    assert robosuite.options_record() == {"fps": 15.0, "kind": "teleop"}
    maniskill = adapter_for("maniskill", str(inputs["maniskill"]), fps=30)
    assert [(s.name, s.kind, s.fps) for s in maniskill.specs()] == [("pushcube_v1", "sim", 30.0)]
    robomind = adapter_for("robomind", str(inputs["robomind"]), kind="human_demo")
    assert [(s.name, s.kind) for s in robomind.specs()] == [("agilex_3rgb", "human_demo")]
    lerobot = adapter_for("lerobot", str(inputs["lerobot"]), kind="sim", embodiment="gr1_arms_only")
    with pytest.warns(InputWarning):
        (spec,) = lerobot.specs()
    assert (spec.kind, spec.embodiment) == ("sim", "gr1_arms_only")
    with pytest.raises(ConfigError, match=r"option 'embodiment' must be a name of \[A-Za-z0-9_\], got 'GR1 arms'"):
        adapter_for("lerobot", str(inputs["lerobot"]), embodiment="GR1 arms")
    with pytest.raises(ConfigError, match="fps must be positive, got -1"):
        adapter_for("maniskill", str(inputs["maniskill"]), fps=-1)


def test_rlds_dataset_option_picks_the_registry_entry_and_a_typo_is_named(inputs: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'bridge_datset' is not in oxe_standardization.yaml \(did you mean "
                                          r"'bridge_dataset'\?\)"):
        adapter_for("oxe_rlds", str(inputs["oxe_rlds"]), dataset="bridge_datset")
    (spec,) = adapter_for("oxe_rlds", str(inputs["oxe_rlds"]), dataset="bridge", fps=3).specs()
    assert (spec.name, spec.fps, spec.embodiment) == ("bridge", 3.0, "widowx")
    # the same episodes under a builder name the registry does not know: any RLDS dataset is read, its rate chosen
    unknown = tmp_path / "my_robot_data" / "1.0.0"
    unknown.mkdir(parents=True)
    info = json.loads((inputs["oxe_rlds"] / "dataset_info.json").read_text())
    (unknown / "dataset_info.json").write_text(json.dumps({**info, "name": "my_robot_data"}))
    shutil.copy(inputs["oxe_rlds"] / "features.json", unknown)
    chosen = r"my_robot_data, which oxe_standardization.yaml gives no fps: no rate recorded; 10 Hz chosen"
    with pytest.warns(DefaultChosen, match=chosen + r" \(this adapter's default\); the option fps sets it"):
        (spec,) = adapter_for("oxe_rlds", str(unknown)).specs()
    assert (spec.name, spec.fps, spec.embodiment) == ("my_robot_data", 10.0, "my_robot_data")


def test_a_rate_the_files_do_not_record_is_said_as_a_default_chosen(inputs: dict[str, Path]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        specs = adapter_for("robomimic", str(inputs["robomimic"])).specs()
        adapter_for("robomimic", str(inputs["robomimic"]), fps=20).specs()  # set: nothing to say
    assert {s.fps for s in specs} == {20.0}
    chosen = sorted(str(w.message) for w in caught if w.category is DefaultChosen)
    assert chosen == [f"{inputs['robomimic'] / task / 'panda' / 'demo.hdf5'}: no rate recorded; 20 Hz chosen "
                      "(robosuite's default control_freq); the option fps sets it"
                      for task in ("door", "lift", "stack", "wipe")]
    with pytest.warns(DefaultChosen, match=r"physx_cpu.json: no rate recorded; 20 Hz chosen \(ManiSkill3's default"):
        adapter_for("maniskill", str(inputs["maniskill"])).specs()


def test_toyworld_config_as_an_option_or_a_file_and_its_errors_name_the_key(tmp_path: Path) -> None:
    config = load_config(None)
    assert [s.name for s in ToyWorldSource("", config=config).specs()] == ["toy_robot", "toy_human"]
    with pytest.raises(ConfigError, match="toyworld option config: .*missing 1 required .*'camera'"):
        ToyWorldSource("", config={k: v for k, v in config.items() if k != "camera"})
    bad_kind = json.loads(json.dumps(config))
    bad_kind["sources"]["toy_human"]["kind"] = "human"
    path = tmp_path / "toy.yaml"
    path.write_text(json.dumps(bad_kind))  # JSON is YAML
    with pytest.raises(ConfigError, match=rf"{path}: sources.toy_human: key 'kind': must be one of \['teleop'"):
        adapter_for("toyworld", str(path))
    bad_kind["sources"]["toy_human"] = {**config["sources"]["toy_human"], "episode": 3}
    with pytest.raises(ConfigError, match=r"sources.toy_human: unknown key 'episode' \(did you mean 'episodes'\?\)"):
        ToyWorldSource("", config=bad_kind)
    path.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match=rf"{path}: not valid YAML"):
        adapter_for("toyworld", str(path))


# Bad metadata: errors that name the file and the reason ----------------------------------------------------------


def copy_gr00t_metadata(real_data: Path, root: Path) -> Path:
    """The GR00T dataset's meta/ copied, its data and videos linked (never written)."""
    shutil.copytree(real_data / GR00T / "meta", root / "meta")
    for part in ("data", "videos"):
        (root / part).symlink_to(real_data / GR00T / part)
    return root


def test_lerobot_metadata_errors_name_the_file_and_the_reason(real_data: Path, tmp_path: Path) -> None:
    root = copy_gr00t_metadata(real_data, tmp_path / "gr00t")
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({k: v for k, v in info.items() if k != "fps"}))
    with pytest.raises(InputError, match=rf"{info_path}: not a LeRobot info.json \(it needs fps"):
        ingest("lerobot", str(root), tmp_path / "out", progress=False)
    info_path.write_text(json.dumps({**info, "splits": {"train": "all"}}))
    with pytest.raises(InputError, match=rf"{info_path}: splits must map each split to 'start:stop'"):
        adapter_for("lerobot", str(root)).specs()
    info_path.write_text(json.dumps(info))
    episodes = root / "meta" / "episodes.jsonl"
    lines = episodes.read_text().splitlines()
    episodes.write_text("\n".join([lines[0], "{not json", *lines[2:]]))
    with pytest.raises(InputError, match=rf"{episodes}: line 2 is not JSON"):
        adapter_for("lerobot", str(root)).work_items()
    episodes.write_text("\n".join([lines[0], json.dumps({"episode_index": 1}), *lines[2:]]))
    with pytest.raises(InputError, match=rf"{episodes}: entry 2 has no 'length'"):
        adapter_for("lerobot", str(root)).work_items()
    episodes.write_text("\n")
    with pytest.raises(InputError, match=rf"{episodes}: no episodes"):
        adapter_for("lerobot", str(root)).work_items()
    assert not (tmp_path / "out").exists()


def test_lerobot_task_index_missing_from_tasks_quarantines_that_episode(real_data: Path, tmp_path: Path) -> None:
    root = copy_gr00t_metadata(real_data, tmp_path / "gr00t")
    tasks = root / "meta" / "tasks.jsonl"
    kept = [line for line in tasks.read_text().splitlines() if json.loads(line)["task_index"] != 3]
    tasks.write_text("\n".join(kept) + "\n")
    adapter = adapter_for("lerobot", str(root))
    with pytest.warns(InputWarning):
        specs = {spec.name: spec for spec in adapter.specs()}
    errors = {item.key: read_item(adapter, specs, item).error for item in adapter.work_items()}
    assert errors == {f"episode_00000{i}": None for i in (0, 1, 3, 4)} | {"episode_000002": (
        f"InputError: {root}/data/chunk-000/episode_000002.parquet: task_index 3 of episode 2 is not in the "
        "dataset's tasks")}


def write_raw_robosuite(path: Path, env_info: str, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env"] = "Lift"
        data.attrs["env_info"] = env_info
        ep = toy(seed)
        data["demo_1/actions"] = ep.actions
        data["demo_1/states"] = ep.states
    return path


def test_robomimic_bad_attributes_quarantine_their_file_and_files_read_in_natural_order(tmp_path: Path) -> None:
    root = tmp_path / "robosuite"
    write_raw_robosuite(root / "run_10.hdf5", json.dumps({"control_freq": 20}))
    write_raw_robosuite(root / "run_2.hdf5", json.dumps({"control_freq": 20}))
    not_json = write_raw_robosuite(root / "run_3.hdf5", "{control_freq: 20")
    not_object = write_raw_robosuite(root / "run_4.hdf5", "[20]")
    bad_rate = write_raw_robosuite(root / "run_5.hdf5", json.dumps({"control_freq": "fast"}))
    with h5py.File(root / "run_6.h5", "w") as f:
        f["actions"] = np.zeros((3, 7))
    odd_robots = write_raw_robosuite(root / "run_7.hdf5", json.dumps({"control_freq": 20, "robots": 5}))
    adapter = adapter_for("robomimic", str(root))
    specs = {spec.name: spec for spec in adapter.specs()}
    items = adapter.work_items()
    assert [item.key for item in items] == ["run_2.hdf5:demo_1", "run_3.hdf5", "run_4.hdf5", "run_5.hdf5", "run_6.h5",
                                            "run_7.hdf5", "run_10.hdf5:demo_1"]
    errors = {item.key: read_item(adapter, specs, item).error for item in items}
    assert errors["run_2.hdf5:demo_1"] is None and errors["run_10.hdf5:demo_1"] is None
    assert errors["run_3.hdf5"].startswith(f"InputError: {not_json}: data attribute env_info: not JSON")
    assert f"{not_object}: data attribute env_info: holds list, not a JSON object" in errors["run_4.hdf5"]
    assert f"{bad_rate}: control_freq 'fast' is not a positive number" in errors["run_5.hdf5"]
    assert errors["run_6.h5"].startswith(f"InputError: {root / 'run_6.h5'}: no data group")
    # a file whose spec cannot be made (robots is not a list) is quarantined too, and the run goes on
    assert errors["run_7.hdf5"] == f"InputError: {odd_robots}: cannot read: TypeError: 'int' object is not iterable"


def test_maniskill_metadata_errors_quarantine_their_recording_and_the_rest_is_read(tmp_path: Path) -> None:
    root = tmp_path / "maniskill"
    root.mkdir()
    good = root / MANISKILL_FILE
    write_maniskill(good, [1, 2], with_obs=True)
    with h5py.File(good, "a") as f:
        del f["traj_0"]  # the first listed trajectory missing: the spec comes from the next one
        f["traj_1/obs/sensor_data/hand_depth/depth"] = np.zeros((13, 8, 8, 1), np.uint16)  # no colour: no camera
    no_episodes = root / "trajectory.none.pd_joint_pos.physx_cpu.h5"
    write_maniskill(no_episodes, [3], with_obs=False)
    no_episodes.with_suffix(".json").write_text(json.dumps({"env_info": {"env_id": "PushCube-v1"}, "episodes": []}))
    not_listed = root / "trajectory.state.pd_joint_pos.physx_cpu.h5"
    write_maniskill(not_listed, [4], with_obs=False)
    not_listed.with_suffix(".json").write_text(json.dumps({"env_info": {}, "episodes": [{"seed": 4}]}))
    adapter = adapter_for("maniskill", str(root), fps=20)
    specs = {spec.name: spec for spec in adapter.specs()}
    assert list(specs["pushcube_v1"].cameras) == ["base_camera"]
    staged = {item.key: read_item(adapter, specs, item) for item in adapter.work_items()}
    assert {key: s.error for key, s in staged.items()} == {
        f"{MANISKILL_FILE}:traj_0": f"InputError: {good}: traj_0 is listed in {good.with_suffix('.json').name} but "
                                    "not in the file",
        f"{MANISKILL_FILE}:traj_1": None,
        no_episodes.name: f"InputError: {no_episodes.with_suffix('.json')}: lists no episodes",
        not_listed.name: f"InputError: {not_listed.with_suffix('.json')}: episodes must be a list of {{episode_id, "
                         "...} entries"}
    (sample,) = staged[f"{MANISKILL_FILE}:traj_1"].samples
    assert sample.meta["cameras"] == ["base_camera"]


def test_maniskill_observations_one_short_is_named(tmp_path: Path) -> None:
    path = tmp_path / MANISKILL_FILE
    write_maniskill(path, [1], with_obs=True)
    with h5py.File(path, "a") as f:
        rgb = f["traj_0/obs/sensor_data/base_camera/rgb"][()]
        del f["traj_0/obs/sensor_data/base_camera/rgb"]
        f["traj_0/obs/sensor_data/base_camera/rgb"] = rgb[:-1]
    adapter = adapter_for("maniskill", str(path), fps=20)
    specs = {spec.name: spec for spec in adapter.specs()}
    (item,) = adapter.work_items()
    assert read_item(adapter, specs, item).error == (
        f"ValueError: {path}: traj_0: streams have unequal lengths: camera base_camera=12, env_states/actors/cube=13, "
        "env_states/articulations/panda=13, obs/agent/qpos=13, obs/agent/qvel=13")


def test_robomind_input_given_relative_to_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_robomind(tmp_path / "robomind", "h5_franka_1rgb", "open_drawer", "ep_003", 7, ("",), "puppet",
                   ("camera_top",))
    monkeypatch.chdir(tmp_path / "robomind" / "benchmark1_0_release" / "h5_franka_1rgb")
    adapter = adapter_for("robomind", "open_drawer")  # the robot type is the folder above the input
    assert [(s.name, s.embodiment) for s in adapter.specs()] == [("franka_1rgb", "franka_1rgb")]
    assert [item.key for item in adapter.work_items()] == ["success_episodes/train/ep_003"]


def test_robomind_type_described_by_its_first_readable_episode(tmp_path: Path) -> None:
    root = tmp_path / "robomind"
    broken = write_robomind(root, "h5_ur_1rgb", "wipe_table", "ep_001", 8, ("",), "puppet", ("camera_top",))
    write_robomind(root, "h5_ur_1rgb", "wipe_table", "ep_002", 9, ("",), "puppet", ("camera_top",))
    broken.write_bytes(broken.read_bytes()[:4096])  # truncated: the first episode of its robot type
    adapter = adapter_for("robomind", str(root))
    specs = {spec.name: spec for spec in adapter.specs()}
    assert list(specs) == ["ur_1rgb"]
    errors = {item.key.rsplit("/", 1)[-1]: read_item(adapter, specs, item).error for item in adapter.work_items()}
    assert errors["ep_002"] is None
    assert errors["ep_001"].startswith(f"InputError: {broken}: not a readable HDF5 file: Unable to ")


def test_shared_helpers_name_what_is_missing(inputs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="demo_1: no per-step streams"):
        common_length({}, "demo_1")
    adapter = adapter_for("robomind", str(inputs["robomind"]))
    with pytest.raises(InputError, match="no feature spec for source 'franka_1rgb': the files that would describe"):
        adapter.spec_of("franka_1rgb")
