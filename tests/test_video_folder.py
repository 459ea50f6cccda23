"""video_folder adapter and clip cutting on the real edge-case videos (Matroska, rotated, B-frames with
negative DTS, corrupt h264, AV1) and on a variable-frame-rate file: clip counts, boundaries, content."""

from __future__ import annotations

import shutil
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import assert_frames_are, best_match, cell_frames, episodes_by_start, ingest
from wamdata.media.codec import psnr
from wamdata.media.decode import VideoDecodeError, decode_frames
from wamdata.sources import adapter_for
from wamdata.sources.base import DefaultChosen

EDGE = "video_edge_cases"


def folder_with(tmp_path: Path, *videos: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir(exist_ok=True)
    for video in videos:
        shutil.copy(video, folder / video.name)
    return folder


def test_matroska_sliding_windows_resampled(real_data: Path, tmp_path: Path) -> None:
    """flipping_a_pancake.mkv: 310 frames at 30 fps (10.33 s); 2 s windows every 1 s at 10 fps."""
    video = real_data / EDGE / "flipping_a_pancake.mkv"
    adapter = adapter_for("video_folder", str(folder_with(tmp_path, video)), fps=10, clip_seconds=2.0,
                          stride_seconds=1.0, source="kitchen")
    (spec,) = adapter.specs()
    assert (spec.fps, spec.cameras["rgb"].height, spec.cameras["rgb"].width) == (10, 240, 426)
    dataset, rejected = ingest(adapter, tmp_path / "out")
    assert rejected == []
    metas = sorted((dataset.read_episode(i).meta for i in range(len(dataset))),
                   key=lambda m: m["info"]["clip_start_sec"])
    # Windows start at 0..8 s; the one at 9 s would end at 11 s, after the video: dropped.
    assert [m["info"]["clip_start_sec"] for m in metas] == [float(s) for s in range(9)]
    assert {m["num_steps"] for m in metas} == {20}
    source = decode_frames(video)
    for meta in (metas[0], metas[5], metas[8]):
        start = int(meta["info"]["clip_start_sec"])
        assert meta["info"]["source_frames"] == [30 * start, 30 * start + 58]
        frames = dataset.read_episode(meta["episode_id"]).frames("rgb")
        # Neighbouring frames of a hand-held video look alike, so each is checked against its own source frame.
        for k, frame in enumerate(frames):
            assert psnr(frame, source[30 * start + 3 * k]) >= 35.0


def test_rotated_video_comes_out_upright(real_data: Path, tmp_path: Path) -> None:
    """video_90.mov is stored 568 wide x 320 high with a -90 degree display matrix: shown portrait."""
    video = real_data / EDGE / "video_90.mov"
    adapter = adapter_for("video_folder", str(folder_with(tmp_path, video)), clip_seconds=0.1)
    (spec,) = adapter.specs()
    assert (spec.cameras["rgb"].height, spec.cameras["rgb"].width) == (568, 320)
    dataset, rejected = ingest(adapter, tmp_path / "out")
    assert rejected == [] and len(dataset) == 1
    frames = dataset.read_episode(0).frames("rgb")
    assert frames.shape == (3, 568, 320, 3)
    with av.open(str(video)) as container:
        stored = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert stored[0].shape == (320, 568, 3)
    upright = [np.rot90(f, -1) for f in stored]  # the display matrix's -90 degrees, i.e. clockwise
    for frame, reference in zip(frames, upright, strict=True):
        assert best_match(frame, np.stack(upright))[1] >= 35.0
        assert best_match(frame, reference[None])[1] > best_match(frame, np.rot90(reference, 2)[None])[1]


def test_b_frames_come_in_presentation_order(real_data: Path, tmp_path: Path) -> None:
    """unordered.mov: 4 frames with B-frame reordering and negative DTS (its 4 pictures are identical, so
    the order shows in the timestamps; the EPIC and VFR fixtures, with B-frames, check it by content)."""
    video = real_data / EDGE / "unordered.mov"
    dataset, rejected = ingest(
        adapter_for("video_folder", str(folder_with(tmp_path, video)), clip_seconds=0.125), tmp_path / "out"
    )
    assert rejected == [] and len(dataset) == 1
    episode = dataset.read_episode(0)
    assert episode.meta["num_steps"] == 4 and episode.meta["info"]["source_frames"] == [0, 4]
    assert min(psnr(f, s) for f, s in zip(episode.frames("rgb"), decode_frames(video), strict=True)) >= 35.0


def test_corrupt_video_keeps_the_good_clips_and_records_why(real_data: Path, tmp_path: Path) -> None:
    """corrupted.mp4 fails to decode after frame 28 (of 50 declared, 10 fps): the 1 s clips before it are
    kept; the clip being cut when it fails and the rest of the video are rejected with the reason."""
    video = real_data / EDGE / "corrupted.mp4"
    dataset, rejected = ingest(
        adapter_for("video_folder", str(folder_with(tmp_path, video)), clip_seconds=1.0), tmp_path / "out"
    )
    assert sorted(dataset.read_episode(i).meta["info"]["clip_start_sec"] for i in range(len(dataset))) == [0.0, 1.0]
    assert [r.key for r in rejected] == ["corrupted.mp4#2.000-3.000s", "corrupted.mp4@3.000s-end"]
    for r in rejected:
        assert "corrupted.mp4" in r.reason and "InvalidDataError" in r.reason
    source = decode_frames(video, 0, 20)
    for i in range(len(dataset)):
        episode = dataset.read_episode(i)
        first = episode.meta["info"]["source_frames"][0]
        assert_frames_are(episode.frames("rgb"), source, first)


def test_unreadable_video_keeps_its_reason_and_mixed_videos_get_one_rate_and_size(real_data: Path,
                                                                                tmp_path: Path) -> None:
    """A file that is no video fails only its own work item, naming it; an AV1 640x480 20 fps video and an
    H.264 426x240 30 fps Matroska video share one source at the lowest rate and the largest 4:3 size neither
    is enlarged to (320x240, the first video's aspect ratio: each ratio is held by one video), announced."""
    av1, pancake_video = real_data / EDGE / "av1_labeled_frames.mp4", real_data / EDGE / "flipping_a_pancake.mkv"
    folder = folder_with(tmp_path, av1, pancake_video)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DefaultChosen)
        adapter = adapter_for("video_folder", str(folder), clip_seconds=0.5)
        (spec,) = adapter.specs()  # the broken file is left out of the format
    notes = [str(w.message) for w in caught if w.category is DefaultChosen]
    assert len(notes) == 2
    assert "run at 20, 30 fps" in notes[0] and "lowest, 20 fps" in notes[0] and "set the fps option" in notes[0]
    assert "640x480, 426x240" in notes[1] and "every clip is 320x240 (4:3" in notes[1] and "centre-cropped" in notes[1]
    assert (spec.fps, spec.cameras["rgb"].height, spec.cameras["rgb"].width) == (20.0, 240, 320)
    items = {item.key: item for item in adapter.work_items()}
    assert sorted(items) == ["av1_labeled_frames.mp4", "broken.mp4", "flipping_a_pancake.mkv"]
    with pytest.raises(VideoDecodeError, match="broken.mp4: not a readable video container"):
        list(adapter.read(items["broken.mp4"]))
    dataset, rejected = ingest(adapter, tmp_path / "out", keys=["av1_labeled_frames.mp4", "flipping_a_pancake.mkv"])
    assert rejected == []
    by_video: dict[str, list] = {}
    for episode in episodes_by_start(dataset):
        by_video.setdefault(episode.meta["info"]["video"], []).append(episode)
    assert len(by_video["av1_labeled_frames.mp4"]) == 4  # 40 frames at 20 fps, 0.5 s clips
    # 10.33 s at 30 fps resampled to 20: 0.5 s clips of 10 frames; the second shows source frames 15, 16, 18, .., 28
    pancake = by_video["flipping_a_pancake.mkv"]
    assert len(pancake) == 20 and {e.meta["num_steps"] for e in pancake} == {10}
    second = pancake[1]
    assert second.meta["fps"] == 20.0 and second.meta["info"]["source_frames"] == [15, 29]
    source = decode_frames(pancake_video, 15, 30)
    centre = source[:, :, 53:373]  # 426 wide cut to 320: 53 columns off the left, 53 off the right
    for k, frame in enumerate(second.frames("rgb")):
        assert psnr(frame, centre[(3 * k) // 2]) >= 35.0, k


def test_variable_frame_rate_is_resampled_by_timestamp(tmp_path: Path) -> None:
    """Frames at irregular times (ms): output frame k at k/10 s is the source frame on screen then."""
    times_ms = [0, 40, 70, 160, 190, 260, 380, 400, 510, 620, 700, 790, 850, 990]
    frames = cell_frames(len(times_ms), seed=3)
    path = tmp_path / "videos" / "vfr.mkv"
    path.parent.mkdir()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=100)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.options = {"crf": "12"}
        for rgb, ms in zip(frames, times_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    adapter = adapter_for("video_folder", str(path.parent), fps=10, clip_seconds=1.0)
    dataset, rejected = ingest(adapter, tmp_path / "out")
    assert rejected == [] and len(dataset) == 1
    on_screen = [max(i for i, ms in enumerate(times_ms) if ms <= 100 * k) for k in range(10)]
    assert on_screen == [0, 2, 4, 5, 7, 7, 8, 10, 11, 12]
    source = decode_frames(path)
    stored = dataset.read_episode(0).frames("rgb")
    assert [best_match(f, source)[0] for f in stored] == on_screen
