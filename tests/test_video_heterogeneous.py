"""Real heterogeneous video ingested from the command line, as a user runs it: the real edge-case videos and
GR00T ego-view videos in one folder (rates, sizes, rotation, AV1/H.264, mov/mkv/mp4, a corrupt file); an
EPIC-KITCHENS-100 layout with the release's mixed rates and sizes, with no options; damaged copies of a real
mp4; one frame stored in three containers; and every user mistake as an error naming what to fix."""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import subprocess
import sys
import typing
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_epic_kitchens import epic_row, write_csv

from conftest import best_match, cell_frames, episodes_by_start, ingest, write_video
from wamdata.format.config import ConfigError, load_yaml, typed, with_overrides
from wamdata.format.reader import Dataset
from wamdata.format.schema import SOURCE_KINDS
from wamdata.media.codec import psnr
from wamdata.media.decode import decode_frames
from wamdata.media.frames import FrameFit
from wamdata.sources import adapter_for
from wamdata.sources.base import available_formats
from wamdata.sources.clips import SourceKind
from wamdata.sources.epic_kitchens import EPIC_100_COLUMNS

EDGE = "video_edge_cases"
GR00T_EGO = "lerobot_gr00t_picknplace/robot_sim.PickNPlace/videos/chunk-000/observation.images.ego_view"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_address(local_ray: None) -> str:
    """The module's Ray, joined by every ingest command (one Ray start for the module, not one per command)."""
    import ray

    return ray.get_runtime_context().gcs_address


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wamdata.cli", "-q", *args], capture_output=True, text=True,
                          timeout=600)


def notes(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("NOTE ")]


def quarantine(root: Path) -> dict[str, str]:
    table = pq.read_table(root / "quarantine.parquet")
    return dict(zip(table.column("key").to_pylist(), table.column("reason").to_pylist(), strict=True))


def test_one_command_ingests_every_real_edge_case_and_gr00t_video(real_data: Path, tmp_path: Path,
                                                                  ray_address: str) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    videos = [p for p in sorted((real_data / EDGE).iterdir()) if not p.name.startswith("LICENSE")]
    videos += sorted((real_data / GR00T_EGO).glob("*.mp4"))
    for video in videos:
        shutil.copy(video, folder / video.name)
    out = tmp_path / "out"
    result = cli("ingest", "video_folder", str(folder), "--out", str(out), "--address", ray_address,
                     "--set", "fps=10", "--set", "short_side=64", "--set", "clip_seconds=2",
                     "--set", "video.pix_fmt=yuv444p")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # Sizes differ in aspect ratio (video_90.mov counts upright, 320 wide): the most common one (1:1) is chosen.
    (note,) = notes(result)
    assert "320x568" in note and "every clip is 64x64 (1:1, the aspect ratio of 6 of 10 videos)" in note
    assert "set the aspect option" in note
    validated = cli("validate", str(out))
    assert validated.returncode == 0, validated.stdout + validated.stderr

    dataset = Dataset.open(out)
    spec = dataset.sources["videos"]
    assert (spec.fps, spec.cameras["rgb"].height, spec.cameras["rgb"].width) == (10, 64, 64)
    assert set(dataset.episodes.column("fps").to_pylist()) == {10.0}
    reasons = quarantine(out)
    # corrupted.mp4 decodes until 2.8 s: its first clip is kept, the clip it fails in and the rest are not.
    assert reasons["corrupted.mp4#2.000-4.000s"].startswith(f"{folder / 'corrupted.mp4'}: clip 2.000-4.000s")
    assert "InvalidDataError" in reasons["corrupted.mp4#2.000-4.000s"]
    assert "the rest of the video is lost" in reasons["corrupted.mp4@4.000s-end"]
    # Videos shorter than one clip are in quarantine, saying so: nothing is left out silently.
    assert "after the video's end at 0.100s" in reasons["video_90.mov#0.000-2.000s"]
    episodes = episodes_by_start(dataset)
    by_video: dict[str, list] = {}
    for episode in episodes:
        by_video.setdefault(episode.meta["info"]["video"], []).append(episode)
    assert {v.name for v in videos} == set(by_video) | {key.split("#")[0].split("@")[0] for key in reasons}
    assert len(by_video["corrupted.mp4"]) == 1
    assert len(by_video["flipping_a_pancake.mkv"]) == 5  # 10.3 s: 2 s clips at 0, 2, .., 8 s
    assert len(by_video["episode_000004.mp4"]) == 8  # 328 frames at 20 fps, 16.4 s
    # Content: each stored frame is its source frame (every other one, 20 -> 10 fps) through the one fit.
    gr00t = by_video["episode_000004.mp4"][3]
    assert gr00t.meta["info"]["source_frames"] == [120, 159]
    source = decode_frames(folder / "episode_000004.mp4", 120, 160)
    fit = FrameFit(64, 64)
    for k, frame in enumerate(gr00t.frames("rgb")):
        assert psnr(frame, fit(source[2 * k])) >= 35.0
    av1 = by_video["av1_labeled_frames.mp4"][0]  # 640x480 AV1: the centre 480x480, shrunk to 64x64
    reference = decode_frames(folder / "av1_labeled_frames.mp4", 0, 40)
    assert [best_match(f, np.stack([fit(r) for r in reference]))[0] for f in av1.frames("rgb")] == list(range(0, 40, 2))


def epic_fixture(root: Path) -> dict[str, Fraction]:
    """EPIC-100 with three of the release's rates and two of its aspect ratios (16:9 and 4:3, as 1920x1080 and
    1920x1440), small: each video 2 s of frames that look like no other, two narrated segments each."""
    videos = {
        "P01_01": (Fraction(60000, 1001), "59.94", cell_frames(120, 80, 128, seed=1)[:, :72]),
        "P02_01": (Fraction(50), "50", cell_frames(100, 80, 96, seed=2)[:, :72]),
        "P03_01": (Fraction(30000, 1001), "29.97", cell_frames(60, 80, 128, seed=3)[:, :72]),
    }
    info, rows = [], []
    for video_id, (rate, text, frames) in videos.items():
        write_video(root / video_id[:3] / "videos" / f"{video_id}.MP4", frames, rate)
        height, width = frames.shape[1:3]
        info.append({"video_id": video_id, "duration": f"{float(len(frames) / rate):.3f}", "fps": text,
                     "resolution": f"{width}x{height}"})
        n = len(frames)
        rows.append(epic_row(f"{video_id}_0", video_id, 1, n // 3, rate, "open tap", "open", "tap"))
        rows.append(epic_row(f"{video_id}_1", video_id, n // 2, n, rate, "wash plate", "wash", "plate"))
    write_csv(root / "EPIC_100_video_info.csv", info, ["video_id", "duration", "fps", "resolution"])
    write_csv(root / "EPIC_100_train.csv", rows, list(EPIC_100_COLUMNS))
    return {video_id: rate for video_id, (rate, _, _) in videos.items()}


def test_epic_kitchens_mixed_rates_and_sizes_need_no_options(tmp_path: Path, ray_address: str) -> None:
    videos = epic_fixture(tmp_path / "EPIC-KITCHENS")
    out = tmp_path / "out"
    result = cli("ingest", "epic_kitchens", str(tmp_path / "EPIC-KITCHENS"), "--out", str(out),
                     "--address", ray_address)
    assert result.returncode == 0, result.stderr
    rate_note, size_note = notes(result)
    assert "run at 29.97, 50, 59.94 fps" in rate_note and "lowest, 29.97 fps" in rate_note
    # 16:9 (two videos) wins; 96x54 is the largest 16:9 size the 96x72 video covers without enlarging.
    assert "128x72 (2 videos), 96x72" in size_note and "every clip is 96x54 (16:9" in size_note
    validated = cli("validate", str(out))
    assert validated.returncode == 0, validated.stdout + validated.stderr

    dataset = Dataset.open(out)
    target = Fraction(30000, 1001)
    assert dataset.sources["epic_kitchens"].fps == pytest.approx(float(target))
    fit = FrameFit(54, 96)
    episodes = {e.meta["info"]["narration_id"]: e for e in episodes_by_start(dataset)}
    assert len(episodes) == 6
    for video_id, rate in videos.items():
        fitted = np.stack([fit(f) for f in decode_frames(tmp_path / "EPIC-KITCHENS" / video_id[:3] / "videos"
                                                         / f"{video_id}.MP4")])
        for row in (0, 1):
            episode = episodes[f"{video_id}_{row}"]
            info = episode.meta["info"]
            start, stop = Fraction(info["start_frame"] - 1) / rate, Fraction(info["stop_frame"]) / rate
            # Output frame k is shown at k / 29.97 s and is the source frame on screen then.
            grid = [k for k in range(int(stop * target) + 2) if start <= Fraction(k) / target + Fraction(1, 10**4)
                    and Fraction(k) / target < stop - Fraction(1, 10**4)]
            expected = [int((Fraction(k) / target + Fraction(1, 10**4)) * rate) for k in grid]
            stored = episode.frames("head")
            assert stored.shape[1:3] == (54, 96) and episode.meta["num_steps"] == len(expected)
            assert info["source_frames"] == [expected[0], expected[-1] + 1]
            assert [best_match(f, fitted)[0] for f in stored] == expected, (video_id, row)


def damaged_copies(real_data: Path, folder: Path) -> None:
    """good.mp4 (a real GR00T ego-view mp4, whose moov atom at the end carries the tag "Lavf60.16.100"), the
    same with bytes of that tag's text flipped (in its last 0.1%), and the same cut before its moov atom."""
    data = (real_data / GR00T_EGO / "episode_000004.mp4").read_bytes()
    folder.mkdir()
    (folder / "good.mp4").write_bytes(data)
    tag = data.rindex(b"Lavf60.16.100")
    assert tag > len(data) * 0.999
    flipped = bytearray(data)
    flipped[tag:tag + 4] = bytes(b ^ 0xFF for b in flipped[tag:tag + 4])
    (folder / "flipped_tag.mp4").write_bytes(bytes(flipped))
    (folder / "no_moov.mp4").write_bytes(data[:data.rindex(b"moov") - 4])


def test_damaged_copies_are_quarantined_and_the_good_one_ingested(real_data: Path, tmp_path: Path,
                                                                  ray_address: str) -> None:
    damaged_copies(real_data, tmp_path / "videos")
    out = tmp_path / "out"
    result = cli("ingest", "video_folder", str(tmp_path / "videos"), "--out", str(out), "--address", ray_address)
    assert result.returncode == 0, result.stderr
    reasons = quarantine(out)
    assert set(reasons) == {"flipped_tag.mp4", "no_moov.mp4"}
    assert reasons["flipped_tag.mp4"].startswith(f"VideoDecodeError: {tmp_path / 'videos' / 'flipped_tag.mp4'}: "
                                                 "not a readable video container: its metadata tags are not UTF-8")
    assert reasons["no_moov.mp4"].startswith(f"VideoDecodeError: {tmp_path / 'videos' / 'no_moov.mp4'}: "
                                             "not a readable video container")
    assert "QUARANTINED flipped_tag.mp4" in result.stderr
    dataset = Dataset.open(out)
    assert {e.meta["info"]["video"] for e in episodes_by_start(dataset)} == {"good.mp4"}
    assert len(dataset) == 4  # 16.4 s at 20 fps in 4 s clips


def block_frames(steps: int, height: int = 64, width: int = 96) -> np.ndarray:
    """Grey (R = G = B) frames, flat on each of JPEG's 8x8 blocks, a random level per block: JPEG at quality
    100 and 4:4:4 stores them exactly (grey needs no chroma, a flat block only its DC coefficient; smooth
    colour gradients come back up to 4 levels off, and the stored clip's codec adds a level to that), while
    another resize filter (bilinear: 41-46 levels off at the block edges) or a crop one pixel off (96-106)
    stands out."""
    levels = np.random.default_rng(7).integers(16, 240, (steps, height // 8, width // 8))
    grey = np.repeat(np.repeat(levels, 8, axis=1), 8, axis=2).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def test_one_frame_in_three_containers_comes_out_the_same(tmp_path: Path) -> None:
    """The same frames as a lossless RGB mp4 (libx264rgb, crf 0: bit-exact; x264 at yuv444p would round
    RGB -> YUV by a level or two), EPIC rgb_frames JPEGs (quality 100, 4:4:4) and an EgoMimic HDF5 array,
    ingested at short_side 32 (96x64 -> 48x32 through the one resize): the same pixels within 1."""
    import av

    frames = block_frames(6)
    folder = tmp_path / "mp4"
    folder.mkdir()
    with av.open(str(folder / "clip.mp4"), "w") as out:
        stream = out.add_stream("libx264rgb", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "rgb24"
        stream.codec_context.options = {"crf": "0"}
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    assert np.array_equal(decode_frames(folder / "clip.mp4"), frames)

    epic = tmp_path / "epic"
    images = epic / "P01" / "rgb_frames" / "P01_01"
    images.mkdir(parents=True)
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(images / f"frame_{i + 1:010d}.jpg", quality=100, subsampling=0)
    info = {"video_id": "P01_01", "duration": "0.2", "fps": "30", "resolution": "96x64"}
    write_csv(epic / "EPIC_100_video_info.csv", [info], list(info))
    write_csv(epic / "EPIC_100_train.csv", [epic_row("P01_01_0", "P01_01", 1, 6, Fraction(30), "x", "x", "x")],
              list(EPIC_100_COLUMNS))

    with h5py.File(tmp_path / "egomimic.hdf5", "w") as f:
        f["data/demo_0/obs/front_img_1"] = frames
        f["data/demo_0/obs/ee_pose"] = np.zeros((6, 3))
        f["data/demo_0/actions_xyz_act"] = np.zeros((6, 100, 3))

    lossless = {"pix_fmt": "yuv444p", "crf": 0}
    stored = {}
    for name, format, input, options in (
        ("mp4", "video_folder", folder, {"clip_seconds": 0.2}),
        ("jpeg", "epic_kitchens", epic, {}),
        ("hdf5", "egomimic", tmp_path / "egomimic.hdf5", {}),
    ):
        dataset, rejected = ingest(adapter_for(format, str(input), short_side=32, video=lossless, **options),
                                   tmp_path / f"out_{name}")
        assert rejected == [] and len(dataset) == 1
        episode = dataset.read_episode(0)
        stored[name] = episode.frames(next(iter(episode.meta["cameras"])))
    assert stored["mp4"].shape == (6, 32, 48, 3)
    for name in ("jpeg", "hdf5"):
        assert np.abs(stored[name].astype(int) - stored["mp4"]).max() <= 1, name


def test_unknown_and_mistyped_options_name_the_option_the_format_and_the_known_ones(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    write_video(folder / "a.mp4", cell_frames(10), 10)
    known = "known options: aspect, camera, clip_seconds, embodiment, fit, fps, kind, short_side, source, "
    with pytest.raises(ConfigError, match=r"source format 'video_folder': unknown option 'fsp' \(did you mean "
                                          rf"'fps'\?\); {known}stride_seconds, video$"):
        adapter_for("video_folder", str(folder), fsp=10)
    with pytest.raises(ConfigError, match="source format 'epic_kitchens': option 'short_side': must be a whole number"):
        adapter_for("epic_kitchens", str(folder), short_side="big")
    with pytest.raises(ConfigError, match=r"option 'fit': must be one of \['crop', 'pad'\], got 'squash'"):
        adapter_for("ego4d", str(folder), fit="squash")
    with pytest.raises(ConfigError, match="option aspect must be WIDTH:HEIGHT"):
        adapter_for("egodex", str(folder), aspect="wide")
    with pytest.raises(ConfigError, match="unknown VideoCodec fields"):
        adapter_for("egomimic", str(folder), video={"pixfmt": "yuv444p"})
    assert typing.get_args(SourceKind) == SOURCE_KINDS  # the kind option checks against the schema's kinds
    with pytest.raises(ConfigError, match=r"option 'kind': must be one of \['teleop', .*got 'robot'"):
        adapter_for("egodex", str(folder), kind="robot")
    import wamdata.ingest

    with pytest.raises(ConfigError, match="unknown option 'clip_second' \\(did you mean 'clip_seconds'\\?\\)"):
        wamdata.ingest.ingest("video_folder", str(folder), tmp_path / "out", clip_second=2)

    for setting, message in (
        ("fsp=10", f"source format 'video_folder': unknown option 'fsp' (did you mean 'fps'?); {known}"),
        ("short_side=big", "source format 'video_folder': option 'short_side': must be a whole number, got 'big'"),
        ("video.pixfmt=yuv444p", "unknown VideoCodec fields ['pixfmt']"),
    ):
        result = cli("ingest", "video_folder", str(folder), "--out", str(tmp_path / "out"), "--set", setting)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("wamdata ingest: error: ") and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_config_files_name_the_file_and_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    write_video(folder / "a.mp4", cell_frames(10), 10)
    config = tmp_path / "ingest.yaml"
    for text, message in (
        ("format: video_folder\nlimit: 0\n", f"{config}: limit: 0 is less than the minimum of 1"),
        ("format: video_folder\nouput: x\n", f"{config}: <root>: Additional properties are not allowed ('ouput'"),
        ("format: video_folder\noptions: [fps]\n", f"{config}: options: ['fps'] is not of type 'object'"),
        ("format: [video_folder\n", f"{config}: not valid YAML"),
        (f"format: video_folder\ninput: {folder}\nout: {tmp_path / 'out'}\noptions: {{fps: 10, clip_secs: 1}}\n",
         f"{config}: source format 'video_folder': unknown option 'clip_secs' (did you mean 'clip_seconds'?)"),
    ):
        config.write_text(text)
        result = cli("ingest", "--config", str(config))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("wamdata ingest: error: ") and message in result.stderr, result.stderr
    config.write_text("format: video_folder\n")
    result = cli("ingest", "--config", str(config))
    assert result.returncode == 2 and "wamdata ingest: error: give INPUT and --out" in result.stderr, result.stderr
    result = cli("ingest", "video_folder", str(folder), "--out", str(tmp_path / "out"), "--set", "out=x")
    assert result.returncode == 2 and "--set out=x: out is a setting of the run, not an option of the format: give " \
        "--out" in result.stderr, result.stderr
    result = cli("ingest", "video_folder", str(folder), "--out", str(tmp_path / "out"), "--limit", "0")
    assert result.returncode == 1 and "the command line: limit: 0 is less than the minimum of 1" in result.stderr


def test_a_config_file_and_set_make_one_ingest(tmp_path: Path, ray_address: str) -> None:
    """The file gives the run and options, the command line overrides some; ``aspect: 1:1`` is text (YAML 1.1
    would read the base-60 number 61), in the file as after --set."""
    assert with_overrides({}, ["aspect=16:9", "fps=30", "video.crf=0"]) == {"aspect": "16:9", "fps": 30,
                                                                          "video": {"crf": 0}}
    folder = tmp_path / "videos"
    write_video(folder / "a.mp4", cell_frames(40, 64, 96), 20)
    config = tmp_path / "ingest.yaml"
    config.write_text(f"format: video_folder\ninput: {folder}\nout: {tmp_path / 'ignored'}\nname: from_file\n"
                      f"address: {ray_address}\noptions:\n  fps: 20\n  clip_seconds: 1\n  aspect: 1:1\n")
    result = cli("ingest", "--config", str(config), "--out", str(tmp_path / "out"), "--set", "fps=10",
                     "--set", "fit=pad", "--set", "video={pix_fmt: yuv444p}")
    assert result.returncode == 0, result.stderr
    dataset = Dataset.open(tmp_path / "out")
    assert dataset.info["name"] == "from_file" and not (tmp_path / "ignored").exists()
    spec = dataset.sources["videos"]
    # 96x64 padded to 1:1 without enlarging: 96x96, the picture in rows 16..80, black above and below.
    assert (spec.fps, spec.cameras["rgb"].height, spec.cameras["rgb"].width) == (10, 96, 96)
    assert spec.cameras["rgb"].codec["pix_fmt"] == "yuv444p"
    frames = dataset.read_episode(0).frames("rgb")
    assert len(frames) == 10 and frames[:, :14].max() <= 8 and frames[:, 18:78].mean() > 60
    (note,) = notes(result)
    assert "every clip is 96x96 (1:1, the aspect option" in note and "letterboxed in black" in note


def test_every_example_ingest_config_is_valid() -> None:
    """Each example validates against the schema, names a format, and (for formats with typed options: the
    video formats now, the robot formats as they get theirs) has options the format knows, of its types."""
    examples = sorted((REPO / "pipelines" / "ingest").glob("*.yaml"))
    assert {p.stem for p in examples} >= {"epic_kitchens", "video_folder", "lerobot", "oxe_rlds", "robomimic"}
    typed_formats = set()
    for path in examples:
        doc = load_yaml(path, "ingest.schema.json")
        assert doc["format"] in available_formats(), path
        adapter_class = vars(importlib.import_module(f"wamdata.sources.{doc['format']}"))
        options_class = next((c.Options for c in adapter_class.values() if getattr(c, "format", None) == doc["format"]
                              and dataclasses.is_dataclass(getattr(c, "Options", None))), None)
        if options_class is not None:
            typed(options_class, doc.get("options") or {}, str(path))
            typed_formats.add(doc["format"])
    assert {"epic_kitchens", "video_folder"} <= typed_formats
