"""Bad input goes to quarantine and the run goes on; a killed ingest resumes to the same bytes; a Ray task
whose worker dies is retried without duplicate episodes."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from conftest import file_digests, kill_cli_when
from wamdata.format.reader import Dataset
from wamdata.format.schema import QUARANTINE_PARQUET, Episode
from wamdata.format.validate import validate
from wamdata.ingest import ingest
from wamdata.ingest.pipeline import staging_dir_for
from wamdata.sources import WorkItem
from wamdata.sources.lerobot import LeRobotSource

GR00T = "lerobot_gr00t_picknplace/robot_sim.PickNPlace"

pytestmark = pytest.mark.usefixtures("local_ray")


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def gr00t_reference(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GR00T dataset ingested once, uninterrupted: the bytes the other runs must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "gr00t"
    with pytest.warns(UserWarning):
        ingest("lerobot", str(real_data / GR00T), out, progress=False)
    return out


def test_corrupt_parquet_and_missing_video_are_quarantined_and_the_rest_ingested(real_data: Path,
                                                                                  tmp_path: Path) -> None:
    root = tmp_path / "picknplace"
    shutil.copytree(real_data / GR00T, root)
    truncate(root / "data" / "chunk-000" / "episode_000001.parquet")
    (root / "videos" / "chunk-000" / "observation.images.ego_view" / "episode_000003.mp4").unlink()
    with pytest.warns(UserWarning):
        result = ingest("lerobot", str(root), tmp_path / "out", progress=False)
    reasons = {r["key"]: r["reason"] for r in result.quarantined}
    assert sorted(reasons) == ["episode_000001", "episode_000003"]
    assert "episode_000001.parquet" in reasons["episode_000001"] or "Parquet" in reasons["episode_000001"]
    assert "episode_000003.mp4" in reasons["episode_000003"] and "missing" in reasons["episode_000003"]
    table = pq.read_table(tmp_path / "out" / QUARANTINE_PARQUET).to_pylist()
    assert [(r["key"], r["path"]) for r in table] == [
        ("episode_000001", str(root / "data" / "chunk-000" / "episode_000001.parquet")),
        ("episode_000003", str(root / "data" / "chunk-000" / "episode_000003.parquet")),
    ]
    dataset = Dataset.open(tmp_path / "out")
    assert sorted(dataset.episodes.column("native_key").to_pylist()) == [
        f"picknplace/episode_{i:06d}" for i in (0, 2, 4)]
    assert validate(tmp_path / "out", progress=False) == []


def test_truncated_hdf5_is_quarantined_and_the_rest_ingested(real_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "robosuite"
    shutil.copytree(real_data / "robosuite_v1_demos", root)
    truncate(root / "stack" / "panda" / "demo.hdf5")
    result = ingest("robomimic", str(root), tmp_path / "out", progress=False)
    assert [r["key"] for r in result.quarantined] == ["stack/panda/demo.hdf5"]
    assert "stack/panda/demo.hdf5" in result.quarantined[0]["reason"]
    dataset = Dataset.open(tmp_path / "out")
    assert sorted(dataset.episodes.column("source").to_pylist()) == ["door", "lift", "wipe"]


def test_corrupt_tfrecord_is_quarantined_and_the_other_split_ingested(real_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(real_data / "oxe_bridge_debug" / "bridge_dataset" / "1.0.0", root)
    train = root / "bridge_dataset-train.tfrecord-00000-of-00001"
    # dataset_info.json lists a val split of 25 episodes: give it a good copy, then damage train's bytes
    shutil.copy(train, root / "bridge_dataset-val.tfrecord-00000-of-00001")
    data = bytearray(train.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    train.write_bytes(bytes(data))
    result = ingest("oxe_rlds", str(root), tmp_path / "out", progress=False)
    assert [r["key"] for r in result.quarantined] == ["train/bridge_dataset-train.tfrecord-00000-of-00001"]
    assert "DataLoss" in result.quarantined[0]["reason"] or "corrupt" in result.quarantined[0]["reason"].lower()
    dataset = Dataset.open(tmp_path / "out")
    assert set(dataset.episodes.column("split").to_pylist()) == {"val"}
    assert len(dataset) == 25


def test_killed_ingest_resumes_to_the_same_bytes(real_data: Path, tmp_path: Path, gr00t_reference: Path) -> None:
    out = tmp_path / "gr00t"
    kill_cli_when(["ingest", "lerobot", str(real_data / GR00T), "--out", str(out)], staging_dir_for(out) / "items",
                  "*.tar")
    assert not out.exists()
    with pytest.warns(UserWarning):
        result = ingest("lerobot", str(real_data / GR00T), out, progress=False)
    assert 1 <= result.skipped_items < 5
    assert not staging_dir_for(out).exists()
    assert file_digests(out) == file_digests(gr00t_reference)


class WorkerDiesOnceSource(LeRobotSource):
    """LeRobot, except that the worker reading one chosen episode kills itself the first time (a node lost,
    an OOM kill): Ray must retry the task, and the output must not hold that episode twice."""

    def __init__(self, input: str, marker: str, victim: str, every_time: bool = False, **options: object) -> None:
        super().__init__(input, **options)
        self.marker = marker
        self.victim = victim
        self.every_time = every_time

    def read(self, item: WorkItem) -> Iterator[Episode]:
        for episode in super().read(item):
            if item.key == self.victim and (self.every_time or not os.path.exists(self.marker)):
                Path(self.marker).touch()
                os._exit(1)
            yield episode


def test_a_dead_worker_is_retried_without_duplicates(real_data: Path, tmp_path: Path, gr00t_reference: Path) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "died-once"
    adapter = WorkerDiesOnceSource(str(real_data / GR00T), marker=str(marker), victim="episode_000002")
    out = tmp_path / "gr00t"
    with pytest.warns(UserWarning):
        ingest("lerobot", str(real_data / GR00T), out, adapter=adapter, progress=False)
    assert marker.exists()  # the worker did die
    ids = Dataset.open(out).episodes.column("episode_id").to_pylist()
    assert len(ids) == len(set(ids)) == 5
    assert file_digests(out) == file_digests(gr00t_reference)



def test_an_input_that_always_kills_its_worker_is_quarantined(real_data: Path, tmp_path: Path) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    adapter = WorkerDiesOnceSource(str(real_data / GR00T), marker=str(tmp_path / "died"), victim="episode_000001",
                                   every_time=True)
    with pytest.warns(UserWarning):
        result = ingest("lerobot", str(real_data / GR00T), tmp_path / "out", adapter=adapter, progress=False)
    assert [(r["key"], r["reason"]) for r in result.quarantined] == [
        ("episode_000001", "the Ray task reading it died 3 times (its worker crashed or was killed)")]
    assert Dataset.open(tmp_path / "out").episodes.column("native_key").to_pylist() == [
        f"robot_sim.PickNPlace/episode_{i:06d}" for i in (0, 2, 3, 4)]
