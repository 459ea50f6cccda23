"""`wamdata validate` and validation on open/write: each problem exits 1 naming the file and the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wamdata.cli import main
from wamdata.format.reader import Dataset
from wamdata.format.schema import ArraySpec, CameraSpec, Episode, SchemaError, Slice, SourceSpec
from wamdata.format.writer import DatasetWriter
from wamdata.media.codec import DEFAULT_CODEC


@pytest.fixture()
def dataset_copy(demo_dataset: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(demo_dataset, copy)
    return copy


def run_validate(root: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(["-q", "validate", str(root)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_clean_dataset_validates(demo_dataset: Path, capsys: pytest.CaptureFixture) -> None:
    code, out = run_validate(demo_dataset, capsys)
    assert code == 0 and out.strip().endswith(": ok")


def test_truncated_shard(dataset_copy: Path, capsys: pytest.CaptureFixture) -> None:
    shard = dataset_copy / "shards/toy_robot/shard-000001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2 + 100])
    code, out = run_validate(dataset_copy, capsys)
    assert code == 1
    assert f"{shard}: sha256 mismatch" in out
    assert f"{shard}: unreadable tar" in out or "not in the shard" in out


def test_one_flipped_byte(dataset_copy: Path, capsys: pytest.CaptureFixture) -> None:
    shard = dataset_copy / "shards/toy_human/shard-000000.tar"
    data = bytearray(shard.read_bytes())
    row = next(r for r in pq.read_table(dataset_copy / "episodes.parquet").to_pylist()
               if r["shard"] == "shards/toy_human/shard-000000.tar")
    video = next(m for m in row["members"] if m["name"].endswith(".front.mp4"))
    data[video["offset"] + video["size"] // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    code, out = run_validate(dataset_copy, capsys)
    assert code == 1
    assert f"{shard}: sha256 mismatch: expected {row['shard_sha256']}" in out
    assert out.count("ERROR") == 1 + out.count(f"{row['episode_id']}: camera front")


def test_unknown_schema_version(dataset_copy: Path, capsys: pytest.CaptureFixture) -> None:
    info_path = dataset_copy / "dataset.json"
    info = json.loads(info_path.read_text())
    info["schema_version"] = 99
    info_path.write_text(json.dumps(info))
    code, out = run_validate(dataset_copy, capsys)
    assert code == 1
    assert f"{info_path}: unknown schema version 99" in out
    with pytest.raises(SchemaError, match="unknown schema version 99"):
        Dataset.open(dataset_copy)


def test_wrong_column_type_in_episodes_parquet(dataset_copy: Path, capsys: pytest.CaptureFixture) -> None:
    path = dataset_copy / "episodes.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("num_steps")
    table = table.set_column(index, "num_steps", table.column("num_steps").cast(pa.float64()))
    pq.write_table(table, path)
    code, out = run_validate(dataset_copy, capsys)
    assert code == 1 and f"{path}: column 'num_steps' has type double, expected int64" in out


def test_episodes_parquet_written_before_the_labels_column_still_opens(dataset_copy: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    path = dataset_copy / "episodes.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["labels"]), path)
    assert Dataset.open(dataset_copy).episodes.column("labels").to_pylist() == [[]] * len(Dataset.open(dataset_copy))
    assert run_validate(dataset_copy, capsys)[0] == 0


def test_missing_dataset_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out = run_validate(tmp_path, capsys)
    assert code == 1 and "dataset.json: missing" in out


def test_array_of_wrong_shape_in_a_shard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = SourceSpec(name="arm", kind="teleop", format="test", embodiment="arm", fps=10.0,
                      arrays={"action": ArraySpec("float32", (3,))})
    root = tmp_path / "ds"
    with DatasetWriter(root, "shape_test", [spec]) as writer:
        writer.write(Episode(source="arm", native_key="a", num_steps=4, arrays={"action": np.zeros((4, 3), "f4")}))
        writer.close()
    # Declare a wider action than the shard holds: open-time checks pass, the sample check must not.
    info = json.loads((root / "dataset.json").read_text())
    info["sources"]["arm"]["arrays"]["action"]["shape"] = [4]
    (root / "dataset.json").write_text(json.dumps(info))
    code, out = run_validate(root, capsys)
    assert code == 1 and "array action" in out and "expected float32 (4, 4)" in out


def make_spec(**arrays: ArraySpec) -> SourceSpec:
    return SourceSpec(name="cam", kind="egocentric_video", format="test", embodiment="human", fps=30.0,
                      cameras={"ego": CameraSpec(16, 16, DEFAULT_CODEC.to_json())}, arrays=arrays)


def test_write_time_validation_names_the_problem(tmp_path: Path) -> None:
    frames = np.zeros((5, 16, 16, 3), np.uint8)
    with pytest.raises(SchemaError, match=r"camera 'ego' has uint8 \(5, 16, 8, 3\), expected uint8 \(5, 16, 16, 3\)"):
        Episode("cam", "a", 5, frames={"ego": frames[:, :, :8]}).check(make_spec())
    with pytest.raises(SchemaError, match="camera 'side' is not declared"):
        Episode("cam", "a", 5, frames={"side": frames}).check(make_spec())
    with pytest.raises(SchemaError, match=r"array 'state': has float32 \(4, 2\), expected float32 \(5, 2\)"):
        Episode("cam", "a", 5, frames={"ego": frames},
                arrays={"state": np.zeros((4, 2), "f4")}).check(make_spec(state=ArraySpec("float32", (2,))))
    with pytest.raises(SchemaError, match=r"slice wrist \[2:5\] lies outside array 'state' of width 4"):
        DatasetWriter(tmp_path / "x", "x", [make_spec(state=ArraySpec("float32", (4,), (Slice("wrist", 2, 5),)))])


def test_video_only_and_state_only_episodes_round_trip(tmp_path: Path) -> None:
    frames = (np.arange(6 * 16 * 16 * 3) % 251).astype(np.uint8).reshape(6, 16, 16, 3)
    video_only = make_spec()
    state_only = SourceSpec(name="sim", kind="sim", format="test", embodiment="arm", fps=20.0,
                            arrays={"action": ArraySpec("float64", (7,)), "state": ArraySpec("float32", (2, 3))})
    with DatasetWriter(tmp_path / "ds", "mixed", [video_only, state_only]) as writer:
        writer.write(Episode("cam", "clip-1", 6, frames={"ego": frames}, language="open the drawer"))
        writer.write(Episode("sim", "demo_1", 3, arrays={"action": np.ones((3, 7)), "state": np.ones((3, 2, 3), "f4")}))
        writer.close()
    dataset = Dataset.open(tmp_path / "ds")
    clip, demo = dataset.read_episode(0), dataset.read_episode(1)
    assert clip.meta["has_actions"] is False and clip.meta["action_label"] == "none" and clip.arrays == {}
    assert clip.meta["language"] == "open the drawer" and clip.frames("ego").shape == (6, 16, 16, 3)
    assert demo.meta["cameras"] == [] and demo.videos == {} and demo.meta["action_label"] == "ground_truth"
    assert demo.arrays["state"].shape == (3, 2, 3)
    assert main(["-q", "validate", str(tmp_path / "ds")]) == 0
