"""What the ingest pipeline carries from the Ray workers back to the user: warnings raised while reading."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from wamdata.format.schema import Episode
from wamdata.ingest import ingest
from wamdata.sources import InputWarning, WorkItem
from wamdata.sources.lerobot import LeRobotSource

GR00T = "lerobot_gr00t_picknplace/robot_sim.PickNPlace"

pytestmark = pytest.mark.usefixtures("local_ray")


class WarnsWhileReading(LeRobotSource):
    """LeRobot, except that reading every episode finds the same disagreement, and one episode another."""

    def read(self, item: WorkItem) -> Iterator[Episode]:
        warnings.warn(f"{self.input}: every episode disagrees with its metadata", InputWarning, stacklevel=2)
        if item.key.endswith("2"):
            warnings.warn(f"{item.path}: only this one", InputWarning, stacklevel=2)
        yield from super().read(item)


def test_warnings_raised_on_workers_reach_the_driver_once_each(real_data: Path, tmp_path: Path) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import a test module
    adapter = WarnsWhileReading(str(real_data / GR00T))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter.specs()  # GR00T's own info.json warnings, raised on the driver: not what this test is about
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ingest("lerobot", str(real_data / GR00T), tmp_path / "out", adapter=adapter, progress=False)
    assert result.summary.total.episodes == 5
    messages = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    assert messages.count(f"{real_data / GR00T}: every episode disagrees with its metadata") == 1
    assert sum(m.endswith(": only this one") and "episode_000002" in m for m in messages) == 1
