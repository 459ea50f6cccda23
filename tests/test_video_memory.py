"""A long 1080p video is cut into clips in one streaming pass: peak memory stays far below the video's
decoded size (benchmarks/ingest_video.py runs the full 10-minute check and reports its peak RSS)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import ingest_video  # noqa: E402 - the benchmark's video maker and child-process runner

GB = 1024**3


def test_one_minute_of_1080p_ingests_in_under_2_gb(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    frames = ingest_video.make_long_video(folder / "long.mp4", seconds=60, segment_seconds=2)
    assert frames == 1800  # 11 GB as decoded RGB
    options = {"short_side": 64, "fps": 5, "clip_seconds": 4.0}
    result, peak_gb = ingest_video.in_child("ingest", str(folder), str(tmp_path / "out"), options)
    assert result["clips"] == 15 and result["steps"] == 15 * 20
    assert peak_gb < 2.0, f"peak RSS {peak_gb:.2f} GB"
