"""Clip cutting on frames held in an array (each frame's pixels are its index): overlapping segments,
resampling up and down, clips that cannot be cut, and the order and short-video rules."""

from __future__ import annotations

import numpy as np
import pytest

from wamdata.sources import Rejected
from wamdata.sources.clips import (
    Clip,
    ClipRequest,
    WindowOptions,
    array_frames,
    cut_clips,
    sliding_windows,
    split_long,
)

FRAMES = np.arange(50, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 6, 3), np.uint8)  # 5 s at 10 fps


def cut(requests: list[ClipRequest] | object, fps: float | None = None) -> list[Clip | Rejected]:
    return list(cut_clips(array_frames(FRAMES, 10.0), requests, fps, "v", "/data/v.mp4"))


def indices(clip: Clip) -> list[int]:
    return [int(f[0, 0, 0]) for f in clip.frames]


def test_overlapping_segments_and_rejections() -> None:
    results = cut([
        ClipRequest("a", 0.0, 1.0), ClipRequest("b", 0.5, 2.0), ClipRequest("tiny", 2.01, 2.05),
        ClipRequest("backwards", 3.0, 2.0), ClipRequest("tail", 4.5, 6.0), ClipRequest("after", 7.0, 8.0),
    ])
    clips = {r.request.key: r for r in results if isinstance(r, Clip)}
    assert indices(clips["a"]) == list(range(10)) and indices(clips["b"]) == list(range(5, 20))
    assert clips["b"].info["source_frames"] == [5, 20] and clips["b"].info["clip_stop_sec"] == 2.0
    reasons = {r.key: r.reason for r in results if isinstance(r, Rejected)}
    assert set(reasons) == {"v#tiny", "v#backwards", "v#tail", "v#after"}
    assert "holds no frame at the video's rate" in reasons["v#tiny"]
    assert "ends (2.000s) before it starts" in reasons["v#backwards"]
    assert reasons["v#tail"].startswith("/data/v.mp4: clip tail [4.500s, 6.000s): ends at 6.000s, after the video's")
    assert "starts at 7.000s" in reasons["v#after"]


def test_resampling_down_and_up() -> None:
    (down,) = cut([ClipRequest("a", 1.0, 2.0)], fps=4)  # grid 1.0, 1.25, 1.5, 1.75 s
    assert indices(down) == [10, 12, 15, 17] and down.times == [1.0, 1.25, 1.5, 1.75]
    (up,) = cut([ClipRequest("a", 1.0, 1.2)], fps=20)  # each source frame shown twice
    assert indices(up) == [10, 10, 11, 11]


def test_windows_min_stop_and_order() -> None:
    windows = cut(sliding_windows(2.0, 1.5))
    assert [(w.request.start, len(w.frames)) for w in windows] == [(0.0, 20), (1.5, 20), (3.0, 20)]
    short = list(cut_clips(array_frames(FRAMES[:5], 10.0), sliding_windows(2.0),
                           None, "v", "v.mp4"))
    assert len(short) == 1 and "after the video's end at 0.500s" in short[0].reason  # shorter than one window
    (clamped,) = cut([ClipRequest("n", 4.0, 6.0, min_stop=4.5)])
    assert indices(clamped) == list(range(40, 50)) and clamped.info["clip_stop_sec"] == 5.0
    with pytest.raises(ValueError, match="out of order"):
        cut([ClipRequest("late", 2.0, 3.0), ClipRequest("early", 1.0, 3.0)])


def test_split_long() -> None:
    parts = split_long(ClipRequest("s", 1.0, 3.5, "text"), 1.0)
    assert [(p.key, p.start, p.stop, p.language) for p in parts] == [
        ("s/part-0", 1.0, 2.0, "text"), ("s/part-1", 2.0, 3.0, "text"), ("s/part-2", 3.0, 3.5, "text")]
    assert split_long(ClipRequest("s", 1.0, 2.0), 1.0) == [ClipRequest("s", 1.0, 2.0)]
    with pytest.raises(ValueError, match="option clip_seconds must be positive, got 0"):
        WindowOptions(clip_seconds=0)
