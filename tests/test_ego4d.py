"""Ego4D adapter on a fixture in the documented layout: windows around narrations (clamped to the video),
sliding windows carrying the narrations inside them, bad and out-of-range narrations rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_frames_are, cell_frames, episodes_by_start, ingest, write_video
from wamdata.media.decode import decode_frames
from wamdata.sources import adapter_for

UID = "1c2b3a4d-0000-4f00-9a00-00000000abcd"


@pytest.fixture(scope="module")
def ego4d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 6 s video at 30 fps with five pass-1 narrations (two bad), one pass-2 narration, and a second
    video uid whose file is missing."""
    root = tmp_path_factory.mktemp("ego4d")
    write_video(root / "v1" / "full_scale" / f"{UID}.mp4", cell_frames(180, seed=4), 30)

    def narration(time: object, text: str, uid: str) -> dict:
        frame = round(time * 30) if isinstance(time, float) else None
        return {"timestamp_sec": time, "timestamp_frame": frame, "narration_text": text, "annotation_uid": uid}

    doc = {
        UID: {
            "narration_pass_1": {"narrations": [
                narration(3.0, "#C C cuts the onion", "n2"),
                narration(0.5, "#C C opens the fridge", "n1"),
                narration(5.8, "#C C puts the knife down", "n3"),
                narration(7.0, "#C C leaves", "n4"),
                narration("soon", "#C C waits", "n5"),
            ]},
            "narration_pass_2": {"narrations": [narration(1.0, "#C C opens a fridge door", "m1")]},
        },
        "ffffffff-0000-4f00-9a00-000000000000": {"narration_pass_1": {"narrations": [narration(1.0, "x", "z")]}},
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "narration.json").write_text(json.dumps(doc))
    return root


def test_windows_around_narrations(ego4d: Path, tmp_path: Path) -> None:
    adapter = adapter_for("ego4d", str(ego4d))
    items = {item.key: item for item in adapter.work_items()}
    with pytest.raises(FileNotFoundError, match="video ffffffff-0000-4f00-9a00-000000000000: no .*mp4"):
        list(adapter.read(items.pop("ffffffff-0000-4f00-9a00-000000000000")))
    dataset, rejected = ingest(adapter, tmp_path / "out", keys=[UID])
    assert sorted(r.key for r in rejected) == [f"{UID}#narration_pass_1/n4", f"{UID}#narration_pass_1/n5"]
    reasons = " ".join(r.reason for r in rejected)
    assert "starts at 6.000s, after the video's end at 6.000s" in reasons and "'soon'" in reasons
    source = decode_frames(ego4d / "v1" / "full_scale" / f"{UID}.mp4")
    episodes = episodes_by_start(dataset)
    # 1 s either side of each narration, clamped to [0, 6] s: frames [0, 45), [60, 120), [144, 180).
    expected = [("#C C opens the fridge", 0.0, 1.5, [0, 45]), ("#C C cuts the onion", 2.0, 4.0, [60, 120]),
                ("#C C puts the knife down", 4.8, 6.0, [144, 180])]
    for episode, (text, start, stop, frames) in zip(episodes, expected, strict=True):
        info = episode.meta["info"]
        assert (episode.meta["language"], info["clip_start_sec"], info["clip_stop_sec"]) == (text, start, stop)
        assert info["source_frames"] == frames and info["narration"]["pass"] == "narration_pass_1"
        assert_frames_are(episode.frames("head"), source, frames[0])


def test_sliding_windows_carry_their_narrations(ego4d: Path, tmp_path: Path) -> None:
    adapter = adapter_for("ego4d", str(ego4d), clips="windows", clip_seconds=2.0, fps=10,
                          narration_passes=["narration_pass_1", "narration_pass_2"])
    dataset, rejected = ingest(adapter, tmp_path / "out", keys=[UID])  # the missing video is covered above
    assert [r.key for r in rejected] == [f"{UID}#narration_pass_1/n5"]  # n4 (7 s) lies in no window
    metas = sorted((dataset.read_episode(i).meta for i in range(len(dataset))),
                   key=lambda m: m["info"]["clip_start_sec"])
    assert [(m["info"]["clip_start_sec"], m["num_steps"]) for m in metas] == [(0.0, 20), (2.0, 20), (4.0, 20)]
    assert [m["language"] for m in metas] == [
        "#C C opens the fridge\n#C C opens a fridge door", "#C C cuts the onion", "#C C puts the knife down",
    ]
