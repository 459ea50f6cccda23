"""Stats: exact moments and close quantiles, merged across shards, per source and per embodiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wamdata.cli import main
from wamdata.format.reader import Dataset
from wamdata.format.schema import ArraySpec, Episode, Slice, SourceSpec
from wamdata.format.stats import SKETCH_SIZE, ArrayStats, StatsAccumulator, merge_all
from wamdata.format.writer import DatasetWriter

STATS = ("mean", "std", "min", "max", "q01", "q99")


def numpy_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    x = x.astype(np.float64)
    return {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0),
            "q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0)}


def assert_matches_numpy(summary: dict, x: np.ndarray) -> None:
    expected = numpy_stats(x)
    assert summary["count"] == len(x)
    np.testing.assert_array_equal(summary["min"], expected["min"])
    np.testing.assert_array_equal(summary["max"], expected["max"])
    # Merged moments differ from numpy's one-pass sums only by float64 rounding.
    np.testing.assert_allclose(summary["mean"], expected["mean"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(summary["std"], expected["std"], rtol=1e-10)
    for q in ("q01", "q99"):
        np.testing.assert_allclose(summary[q], expected[q], rtol=0.01)


def test_small_parts_merge_exactly() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (7, 100, 1, 333)]
    merged = merge_all([ArrayStats.of(p) for p in parts]).summary()
    x = np.concatenate(parts)
    assert_matches_numpy(merged, x)
    # Below SKETCH_SIZE values the quantiles are numpy's, not just close to them.
    np.testing.assert_allclose(merged["q01"], np.quantile(x, 0.01, axis=0), rtol=1e-12)


def test_large_skewed_parts_stay_within_one_percent() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.lognormal(0.5, 0.8, size=(n, 3)) + 1.0 for n in rng.integers(2_000, 40_000, size=24)]
    assert sum(len(p) for p in parts) > 50 * SKETCH_SIZE
    assert_matches_numpy(merge_all([ArrayStats.of(p) for p in parts]).summary(), np.concatenate(parts))


def test_merge_order_does_not_change_moments() -> None:
    rng = np.random.default_rng(2)
    parts = [ArrayStats.of(rng.uniform(-1, 1, size=(50, 2))) for _ in range(9)]
    a, b = merge_all(parts).summary(), merge_all(parts[::-1]).summary()
    for name in STATS:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-15)


def test_width_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="width"):
        ArrayStats.of(np.zeros((3, 2))).merge(ArrayStats.of(np.zeros((3, 3))))


def _state_only_source(name: str, embodiment: str) -> SourceSpec:
    slices = (Slice("joint_pos", 0, 3, "rad"), Slice("gripper", 3, 4, "fraction", "1 = closed"))
    return SourceSpec(name=name, kind="teleop", format="test", embodiment=embodiment, fps=15.0,
                      arrays={"action": ArraySpec("float32", (4,), slices), "state": ArraySpec("float64", (4,))})


def test_dataset_stats_over_shards_sources_and_embodiments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(3)
    sources = [_state_only_source("arm_a", "arm"), _state_only_source("arm_b", "arm"),
               _state_only_source("other", "other_arm")]
    arrays: dict[str, list[dict[str, np.ndarray]]] = {s.name: [] for s in sources}
    root = tmp_path / "ds"
    with DatasetWriter(root, "stats_test", sources, shard_bytes=20_000) as writer:
        for i in range(60):
            source = sources[i % 3].name
            steps = int(rng.integers(5, 300))
            episode_arrays = {
                "action": (rng.standard_t(4, size=(steps, 4)) * [1, 2, 3, 0.1]).astype(np.float32),
                "state": rng.uniform(-np.pi, np.pi, size=(steps, 4)),
            }
            arrays[source].append(episode_arrays)
            writer.write(Episode(source=source, native_key=f"ep{i}", num_steps=steps, arrays=episode_arrays))
        writer.close()
    dataset = Dataset.open(root)
    shards = {r["shard"] for r in dataset.episodes.to_pylist() if r["source"] == "arm_a"}
    assert len(shards) >= 3
    stats = dataset.info["stats"]
    for source, episodes in arrays.items():
        for name in ("action", "state"):
            x = np.concatenate([e[name] for e in episodes])
            assert_matches_numpy(stats["by_source"][source][name], x)
    for name in ("action", "state"):
        x = np.concatenate([e[name] for s in ("arm_a", "arm_b") for e in arrays[s]])
        assert_matches_numpy(stats["by_embodiment"]["arm"][name], x)
    assert set(stats["by_embodiment"]) == {"arm", "other_arm"}

    # `wamdata stats` recomputes from the arrays alone and agrees with what the writer stored.
    assert main(["-q", "stats", str(root)]) == 0
    out = capsys.readouterr().out
    assert "source arm_a / action" in out and "embodiment arm / state" in out
    assert "differ" not in out


def test_accumulator_parts_equal_one_pass() -> None:
    rng = np.random.default_rng(4)
    episodes = [rng.normal(size=(int(n), 2)).astype(np.float32) for n in rng.integers(1, 50, size=40)]
    accumulator = StatsAccumulator(part_steps=100)
    for e in episodes:
        accumulator.add({"action": e, "frame_index": np.arange(len(e))})
    result = accumulator.result()
    assert set(result) == {"action"}
    assert len(accumulator.parts) > 3
    assert_matches_numpy(result["action"].summary(), np.concatenate(episodes))
