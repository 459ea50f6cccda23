"""Shared fixtures: the real sample data folder and a small demo dataset built once per session."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Ray binds the loopback address instead of the host's (tests never reach another machine); read by Ray at
# import, so set before any test module imports it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from wamdata.demo import run_demo
from wamdata.sources.toyworld import load_config

REAL_DATA = Path(os.environ.get("WAMDATA_REAL_DATA", Path(__file__).resolve().parents[2] / "shared/data/real"))


def small_demo_config() -> dict:
    """The packaged demo config, shrunk: enough episodes for several shards per source, fast to build."""
    config = load_config(None)
    config["sources"]["toy_robot"]["episodes"] = 30
    config["sources"]["toy_human"]["episodes"] = 12
    config["shard_bytes"] = 60_000
    config["native_formats"]["episodes"] = 4
    return config


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.fail(f"real sample data not found at {REAL_DATA} (set WAMDATA_REAL_DATA)")
    return REAL_DATA


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "toy"
    result = run_demo(small_demo_config(), out=root, progress=False)
    assert result.problems == []
    return root


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One embedded Ray (2 CPUs, no dashboard) shared by the tests of a module; ingest() joins it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file below root, by relative path: two datasets are byte-identical iff these are equal."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def rows_by_native_key(dataset) -> dict[str, int]:  # noqa: ANN001 - a wamdata.dataset.Dataset
    """Row index of each episode in episodes.parquet, by its native key."""
    return {key: i for i, key in enumerate(dataset.episodes.column("native_key").to_pylist())}
