"""EPIC-KITCHENS adapter on fixtures in the documented layouts (EPIC-100 with MP4 at 59.94 fps, EPIC-55
with extracted JPEG frames at 50 fps): segment boundaries in frames and seconds, labels, content, and
bad rows / missing or corrupt videos."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_frames_are, cell_frames, episodes_by_start, ingest, write_video
from wamdata.media.decode import VideoDecodeError, decode_frames
from wamdata.sources import adapter_for
from wamdata.sources.epic_kitchens import EPIC_100_COLUMNS, exact_rate, format_timestamp, parse_timestamp

NTSC_60 = Fraction(60000, 1001)


def epic_row(row_id: str, video_id: str, start_frame: int, stop_frame: int, rate: Fraction, text: str,
             verb: str, noun: str, id_column: str = "narration_id") -> dict[str, str]:
    start, stop = float((start_frame - 1) / rate), float(stop_frame / rate)
    return {
        id_column: row_id, "participant_id": video_id.split("_")[0], "video_id": video_id,
        "narration_timestamp": format_timestamp(start), "start_timestamp": format_timestamp(start),
        "stop_timestamp": format_timestamp(stop), "start_frame": str(start_frame), "stop_frame": str(stop_frame),
        "narration": text, "verb": verb, "verb_class": "3", "noun": noun, "noun_class": "7",
        "all_nouns": f"['{noun}', 'tap']", "all_noun_classes": "[7, 12]",
    }


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def make_epic100(root: Path, rate: Fraction, rate_text: str) -> Path:
    """EPIC-100: P01_01.MP4, 120 frames at ``rate``, six rows of which three are bad."""
    write_video(root / "P01" / "videos" / "P01_01.MP4", cell_frames(120, seed=1), rate)
    write_csv(root / "EPIC_100_video_info.csv", [
        {"video_id": "P01_01", "duration": f"{float(120 / rate):.3f}", "fps": rate_text, "resolution": "64x64"},
    ], ["video_id", "duration", "fps", "resolution"])
    rows = [
        epic_row("P01_01_0", "P01_01", 1, 30, rate, "open tap", "open", "tap"),
        epic_row("P01_01_1", "P01_01", 61, 90, rate, "wash plate", "wash", "plate"),
        epic_row("P01_01_2", "P01_01", 75, 120, rate, "put down plate", "put-down", "plate"),
        epic_row("P01_01_3", "P01_01", 100, 150, rate, "past the end", "take", "cup"),
        {**epic_row("P01_01_4", "P01_01", 10, 20, rate, "bad stamp", "take", "cup"), "start_timestamp": "0:0:x"},
        {**epic_row("P01_01_5", "P01_01", 1, 10, rate, "wrong stamp", "take", "cup"),
         "start_timestamp": "00:00:05.00"},
    ]
    write_csv(root / "EPIC_100_train.csv", rows, list(EPIC_100_COLUMNS))
    return root


@pytest.fixture(scope="module")
def epic100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_epic100(tmp_path_factory.mktemp("epic100"), NTSC_60, "59.94")


@pytest.mark.parametrize(("rate", "rate_text"), [(NTSC_60, "59.94"), (Fraction(50), "50")])
def test_epic100_segments_map_frames_to_seconds(rate: Fraction, rate_text: str, tmp_path: Path) -> None:
    root = make_epic100(tmp_path / "epic", rate, rate_text)
    adapter = adapter_for("epic_kitchens", str(root))
    (spec,) = adapter.specs()
    assert spec.fps == pytest.approx(float(rate), abs=1e-6)
    dataset, rejected = ingest(adapter, tmp_path / "out")
    # The bad rows are rejected, each naming the annotation file or the video and the reason.
    reasons = {r.key: r.reason for r in rejected}
    assert set(reasons) == {"P01_01#P01_01_3", "P01_01#P01_01_4", "P01_01#P01_01_5"}
    past_end = reasons["P01_01#P01_01_3"]
    assert "P01_01.MP4" in past_end and f"after the video's end at {float(120 / rate):.3f}s" in past_end
    assert "EPIC_100_train.csv" in reasons["P01_01#P01_01_4"] and "not HH:MM:SS.ff" in reasons["P01_01#P01_01_4"]
    assert "start_timestamp 00:00:05.00 (5.000s) disagrees with start_frame 1 (0.000s" in reasons["P01_01#P01_01_5"]

    source = decode_frames(root / "P01" / "videos" / "P01_01.MP4")
    assert len(source) == 120
    stored = {}
    for i in range(len(dataset)):
        episode = dataset.read_episode(i)
        stored[episode.meta["info"]["narration_id"]] = episode
    assert sorted(stored) == ["P01_01_0", "P01_01_1", "P01_01_2"]
    for row_id, (first, last, text) in {
        "P01_01_0": (1, 30, "open tap"), "P01_01_1": (61, 90, "wash plate"), "P01_01_2": (75, 120, "put down plate"),
    }.items():
        episode = stored[row_id]
        meta, info = episode.meta, episode.meta["info"]
        assert meta["num_steps"] == last - first + 1
        assert meta["language"] == text and meta["split"] == "train" and meta["has_actions"] is False
        assert info["source_frames"] == [first - 1, last]
        # 1-based frame numbers: frame n starts at (n - 1) / rate s (rate 60000/1001 for "59.94").
        assert info["clip_start_sec"] == pytest.approx(float((first - 1) / rate), abs=1e-6)
        assert info["clip_stop_sec"] == pytest.approx(float(last / rate), abs=1e-6)
        assert info["all_nouns"][1] == "tap" and info["all_noun_classes"] == [7, 12] and info["verb_class"] == 3
        frames = episode.frames("head")
        assert_frames_are(frames, source, first - 1)


def test_epic55_frame_folders_at_50_fps(tmp_path: Path) -> None:
    """EPIC-55 columns (uid) and video info (video,resolution,duration,fps), extracted JPEG frames."""
    root = tmp_path / "epic55"
    frames = cell_frames(100, seed=2)
    folder = root / "P02" / "rgb_frames" / "P02_03"
    folder.mkdir(parents=True)
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"frame_{i + 1:010d}.jpg", quality=95)
    info = {"video": "P02_03", "resolution": "64x64", "duration": "2.0", "fps": "50"}
    write_csv(root / "EPIC_video_info.csv", [info], list(info))
    columns = ["uid", *EPIC_100_COLUMNS[1:]]
    rows = [epic_row("7", "P02_03", 1, 50, Fraction(50), "cut onion", "cut", "onion", "uid"),
            epic_row("8", "P02_03", 26, 100, Fraction(50), "put onion", "put", "onion", "uid")]
    write_csv(root / "EPIC_test_action_labels.csv", rows, columns)
    dataset, rejected = ingest(adapter_for("epic_kitchens", str(root), max_clip_seconds=1.0), tmp_path / "out")
    assert rejected == []
    infos = sorted((dataset.read_episode(i).meta for i in range(len(dataset))), key=lambda m: m["native_key"])
    # Row 8 (1.5 s) is split at max_clip_seconds: [0.5, 1.5) and [1.5, 2.0).
    assert [m["native_key"] for m in infos] == ["P02_03#7", "P02_03#8/part-0", "P02_03#8/part-1"]
    assert [m["info"]["source_frames"] for m in infos] == [[0, 50], [25, 75], [75, 100]]
    assert [m["info"]["clip_start_sec"] for m in infos] == [0.0, 0.5, 1.5]
    assert [m["split"] for m in infos] == ["test"] * 3
    episode = dataset.read_episode(infos[1]["episode_id"])
    source = np.stack([np.asarray(Image.open(path)) for path in sorted(folder.iterdir())])
    assert_frames_are(episode.frames("head"), source, 25)


def test_resampled_to_a_target_rate(epic100: Path, tmp_path: Path) -> None:
    adapter = adapter_for("epic_kitchens", str(epic100), fps=20, short_side=32)
    (spec,) = adapter.specs()
    assert (spec.fps, spec.cameras["head"].height, spec.cameras["head"].width) == (20, 32, 32)
    dataset, _ = ingest(adapter, tmp_path / "out")
    episode = next(e for e in episodes_by_start(dataset) if e.meta["info"]["narration_id"] == "P01_01_1")
    # Frames 61..90 are [1.001, 1.5015) s: grid points 1.05 .. 1.50 s at 20 fps, each the frame then on
    # screen: 1.05 s is within 0-based frame 62 (1.0344..1.0511 s), 1.50 s within frame 89.
    assert episode.meta["num_steps"] == 10
    assert episode.meta["info"]["source_frames"] == [62, 90]
    assert episode.meta["info"]["first_frame_sec"] == 1.05
    assert episode.frames("head").shape == (10, 32, 32, 3)


def test_missing_and_corrupt_videos_raise_naming_the_file(epic100: Path, tmp_path: Path) -> None:
    root = epic100
    broken = tmp_path / "broken"
    (broken / "P01" / "videos").mkdir(parents=True)
    for name in ("EPIC_100_video_info.csv", "EPIC_100_train.csv"):
        (broken / name).write_bytes((root / name).read_bytes())
    adapter = adapter_for("epic_kitchens", str(broken))
    (item,) = adapter.work_items()
    with pytest.raises(FileNotFoundError, match=r"P01_01: neither .*P01_01\.MP4 nor .*rgb_frames/P01_01"):
        list(adapter.read(item))
    video = (root / "P01" / "videos" / "P01_01.MP4").read_bytes()
    (broken / "P01" / "videos" / "P01_01.MP4").write_bytes(video[: len(video) // 3])
    with pytest.raises(VideoDecodeError, match="P01_01.MP4"):
        list(adapter.read(item))


def test_timestamps_and_rates() -> None:
    assert parse_timestamp("00:01:02.50") == 62.5
    assert parse_timestamp("01:00:00.00") == 3600.0
    assert format_timestamp(3723.456) == "01:02:03.46" and parse_timestamp(format_timestamp(62.5)) == 62.5
    for bad in ("1:2", "00:61:00.00", "aa:00:00.00", ""):
        with pytest.raises(ValueError, match="not HH:MM:SS.ff"):
            parse_timestamp(bad)
    assert exact_rate(59.94) == NTSC_60 and exact_rate(29.97) == Fraction(30000, 1001)
    assert exact_rate(47.95) == Fraction(48000, 1001)
    assert exact_rate(50) == 50 and exact_rate(90) == 90
