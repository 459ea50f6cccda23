"""The `wamdata` command line, run as a user runs it (a subprocess of the installed entry point)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import small_demo_config
from wamdata.toy.world import generate_episode


def wamdata(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wamdata.cli", *args], capture_output=True, text=True, timeout=300)


def test_demo_prints_its_summary_and_validates(tmp_path: Path) -> None:
    config = small_demo_config()
    config_path = tmp_path / "demo.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = wamdata("-q", "demo", "--config", str(config_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    robot = next(line.split() for line in lines if line.startswith("toy_robot"))
    assert robot[:4] == ["toy_robot", "sim", "toy_pusher", "30"]
    total = next(line.split() for line in lines if line.startswith("total"))
    assert total[1] == "42"
    assert "validate: ok (42 episodes" in result.stdout
    assert (tmp_path / "out" / "dataset.json").exists()
    native = {line.split()[0]: line.split() for line in lines
              if line.startswith(("lerobot ", "robomimic ", "epic_kitchens "))}
    robot = config["sources"]["toy_robot"]
    frames = sum(len(generate_episode(robot["first_seed"] + i, image_size=config["image_size"],
                                      max_steps=config["max_steps"], noise=config["noise"]).frames) for i in range(4))
    for format in ("lerobot", "robomimic"):
        assert native[format][3:6] == ["4", str(frames), "0"]
        assert native[format][-1] == "ok"
    human = config["sources"]["toy_human"]
    human_frames = sum(len(generate_episode(human["first_seed"] + i, "human_hand", image_size=config["image_size"],
                                            max_steps=config["max_steps"], noise=human["noise"]).frames)
                       for i in range(4))
    assert native["epic_kitchens"][3:6] == ["4", str(human_frames), "0"] and native["epic_kitchens"][-1] == "ok"
    # the LAM stage: trained on the human video, applied to the 12 human episodes, measured on the robot's
    assert "label apply: 12 episodes" in result.stdout
    assert {"embedding_probe_r2", "code_probe_r2", "perplexity", "frame_diff_probe_r2"} <= {
        line.split()[0] for line in lines if line.startswith("  ")}
    assert (tmp_path / "out_lam" / "model.safetensors").exists()


def test_inspect_shows_sources_slices_and_an_episode(demo_dataset: Path) -> None:
    result = wamdata("inspect", str(demo_dataset))
    assert result.returncode == 0, result.stderr
    assert "toy_robot" in result.stdout and "agent_pos[0:2]" in result.stdout
    assert "front 64x64 h264" in result.stdout
    assert "splits: {'train':" in result.stdout
    one = wamdata("inspect", str(demo_dataset), "--episode", "0")
    assert one.returncode == 0 and '"num_steps"' in one.stdout and "front:" in one.stdout


def test_errors_name_the_dataset(tmp_path: Path) -> None:
    result = wamdata("inspect", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert f"{tmp_path / 'nothing'}/dataset.json: missing" in result.stderr


def test_source_formats_are_registered_by_module_name() -> None:
    from wamdata.sources import adapter_for, available_formats

    assert "toyworld" in available_formats()
    source = adapter_for("toyworld", "")
    assert [s.name for s in source.specs()] == ["toy_robot", "toy_human"]
    with pytest.raises(ValueError, match="unknown source format 'nope'; available: .*toyworld"):
        adapter_for("nope", "x")


def test_ingest_command_limits_work_items_and_reports_quarantine(real_data: Path, tmp_path: Path) -> None:
    shutil.copytree(real_data / "robosuite_v1_demos", tmp_path / "demos")
    (tmp_path / "demos" / "door" / "panda" / "demo.hdf5").write_bytes(b"not an hdf5 file")
    result = wamdata("-q", "ingest", "robomimic", str(tmp_path / "demos"), "--out", str(tmp_path / "out"),
                     "--limit", "3")
    assert result.returncode == 0, result.stderr
    sources = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()
               if line.startswith(("lift", "stack", "door", "wipe"))}
    # the first 3 work items are door (bad), lift, stack; wipe's source is declared but got no work item
    assert sources == {"lift": "1", "stack": "1", "wipe": "0"}
    assert "QUARANTINED door/panda/demo.hdf5" in result.stderr
    assert "1 input(s) quarantined" in result.stderr
