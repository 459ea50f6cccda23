"""EPIC-KITCHENS (EPIC-100 and EPIC-55): one episode per annotated segment, verb and noun kept.

Layout under the input folder::

    EPIC_100_train.csv, EPIC_100_validation.csv, ...   annotations (or EPIC_train_action_labels.csv: EPIC-55)
    EPIC_100_video_info.csv                             video_id,duration,fps,resolution
        (EPIC-55: EPIC_video_info.csv                   video,resolution,duration,fps)
    P01/videos/P01_01.MP4                               the video, or its extracted frames:
    P01/rgb_frames/P01_01/frame_0000000001.jpg

A row's ``start_frame`` / ``stop_frame`` are 1-based frame numbers at the video's own rate (59.94, 50,
29.97, 47.95 or 90 fps; 59.94 is 60000/1001), ``stop_frame`` included: the segment is source frames
[start_frame - 1, stop_frame), i.e. [(start_frame - 1) / fps, stop_frame / fps) seconds. The
``HH:MM:SS.ff`` timestamps are checked against the frame numbers. List columns (``all_nouns``) are Python
literals. Each video (with all its rows) is one work item; a bad row comes out as ``Rejected`` and the
other rows of the video are still cut.

The release mixes rates (59.94, 50, 29.97, 47.95, 90 fps) and sizes (1920x1080, 1280x720, 1920x1440): taken
from the video info CSV, they are resolved to one rate (by default the lowest) and one frame size (by
default centre-cropped to the most common aspect ratio) as ``wamdata.sources.clips`` says, and announced;
segments are cut by time, so each lands on the frames shown during it at the new rate.

Options: ``annotations`` (CSV paths; default: every annotation CSV in the input folder), ``fps``,
``short_side``, ``fit`` ("crop" or "pad"), ``aspect`` ("16:9"), ``max_clip_seconds`` (longer segments are
cut into pieces), ``video`` (codec fields of the stored clips, e.g. ``{pix_fmt: yuv444p}``), ``source``
(default "epic_kitchens"), ``camera`` (default "head"), ``kind`` (default "egocentric_video"),
``embodiment`` (default "human").
"""

from __future__ import annotations

import ast
import csv
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

from wamdata.format.schema import Episode
from wamdata.media.decode import VideoInfo, iter_frames
from wamdata.sources.base import Rejected, WorkItem, register, require_positive
from wamdata.sources.clips import (
    ClipOptions,
    ClipRequest,
    SourceNaming,
    VideoClipSource,
    image_folder_frames,
    probe,
    split_long,
)

EPIC_100_COLUMNS = (
    "narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp", "stop_timestamp",
    "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class", "all_nouns",
    "all_noun_classes",
)
# EPIC-55 names the row id "uid"; the columns the adapter reads are the same otherwise.
REQUIRED_COLUMNS = tuple(c for c in EPIC_100_COLUMNS if c not in ("narration_id", "narration_timestamp"))
VIDEO_INFO_FILES = ("EPIC_100_video_info.csv", "EPIC_video_info.csv")
LIST_COLUMNS = ("all_nouns", "all_noun_classes")
INT_COLUMNS = ("verb_class", "noun_class")
RESOLUTION = re.compile(r"^(\d+)x(\d+)$", re.IGNORECASE)
TIMESTAMP = re.compile(r"^(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)$")
# A timestamp is written to 1/100 s and a frame number counts frames: allow both roundings and a frame.
TIMESTAMP_SLACK_SEC = 0.05


def parse_timestamp(text: str) -> float:
    """``HH:MM:SS.ff`` as seconds; ValueError on anything else."""
    match = TIMESTAMP.match(text.strip())
    if not match:
        raise ValueError(f"timestamp {text!r} is not HH:MM:SS.ff")
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def format_timestamp(seconds: float) -> str:
    """Seconds as ``HH:MM:SS.ff``, as EPIC-KITCHENS writes them."""
    minutes, secs = divmod(seconds, 60.0)
    return f"{int(minutes // 60):02d}:{int(minutes % 60):02d}:{secs:05.2f}"


def exact_rate(fps: float) -> Fraction:
    """The exact rate behind a rounded one: 59.94 -> 60000/1001 (NTSC rates), 50 -> 50."""
    ntsc = fps * 1001 / 1000
    if abs(ntsc - round(ntsc)) < 0.01 and abs(fps - round(fps)) > 0.01:
        return Fraction(round(ntsc) * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def split_of(annotation_file: Path) -> str:
    name = annotation_file.stem.lower()
    return "val" if "validation" in name else "test" if "test" in name else "train"


@dataclass(frozen=True)
class EpicKitchensOptions(ClipOptions, SourceNaming):
    source: str = "epic_kitchens"
    camera: str = "head"
    max_clip_seconds: float | None = None
    annotations: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "max_clip_seconds")


@register
class EpicKitchensSource(VideoClipSource):
    format = "epic_kitchens"
    Options = EpicKitchensOptions

    @cached_property
    def annotation_files(self) -> list[Path]:
        if self.options.annotations is not None:
            return [Path(p) for p in self.options.annotations]
        files = []
        for path in sorted(self.root.glob("*.csv")):
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            if "narration" in header and ("narration_id" in header or "uid" in header):
                files.append(path)
        if not files:
            raise FileNotFoundError(f"{self.root}: no EPIC-KITCHENS annotation CSV (with narration columns)")
        return files

    @cached_property
    def video_info(self) -> dict[str, dict[str, str]]:
        """video_id -> {duration, fps, resolution}, from either release's video info CSV."""
        for name in VIDEO_INFO_FILES:
            path = self.root / name
            if path.is_file():
                with open(path, newline="") as f:
                    return {row.get("video_id") or row["video"]: {**row, "file": name} for row in csv.DictReader(f)}
        raise FileNotFoundError(f"{self.root}: no {' or '.join(VIDEO_INFO_FILES)}")

    def rate_of(self, video_id: str) -> Fraction:
        info = self.video_info.get(video_id)
        if info is None:
            raise ValueError(f"{self.root}: video {video_id} is not in the video info CSV")
        return exact_rate(float(info["fps"]))

    def video_formats(self) -> dict[str, VideoInfo | Exception]:
        """Each annotated video's rate and size as the video info CSV gives them (the release's videos are
        large: reading the CSV is instant, probing each file is not)."""
        formats: dict[str, VideoInfo | Exception] = {}
        for video_id in sorted({row["video_id"] for row in self.rows}):
            info = self.video_info.get(video_id)
            if info is None:
                formats[video_id] = ValueError(f"{self.root}: video {video_id} is not in the video info CSV")
                continue
            size = RESOLUTION.match((info.get("resolution") or "").strip())
            try:
                fps = float(info.get("fps") or "")
            except ValueError:
                fps = math.nan
            if size is None or not 0 < fps < math.inf:
                formats[video_id] = ValueError(f"{self.root / info['file']}: video {video_id}: fps {info.get('fps')!r}"
                                               f" and resolution {info.get('resolution')!r} are not a rate and WxH")
            else:
                formats[video_id] = VideoInfo(0, float(exact_rate(fps)), int(size[1]), int(size[2]), "")
        return formats

    def description(self) -> str:
        return "EPIC-KITCHENS narrated segments (verb, noun) from head-mounted video"

    @cached_property
    def rows(self) -> list[dict[str, str]]:
        rows = []
        for path in self.annotation_files:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
                if missing or not {"narration_id", "uid"} & set(reader.fieldnames or []):
                    raise ValueError(f"{path}: not an EPIC-KITCHENS annotation CSV: missing columns "
                                     f"{missing or ['narration_id (or uid)']}")
                for row in reader:
                    rows.append({**row, "split": split_of(path), "annotation_file": path.name})
        return rows

    def work_items(self) -> list[WorkItem]:
        by_video: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in self.rows:
            by_video[row["video_id"]].append(row)
        return [
            WorkItem(key=video_id, path=str(self.root), options={"rows": rows})
            for video_id, rows in sorted(by_video.items())
        ]

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        video_id = item.key
        self.format_of(video_id)  # a video the CSV does not describe fails here
        participant = video_id.split("_")[0]
        video = next(
            (p for p in sorted((self.root / participant / "videos").glob(f"{video_id}.*"))
             if p.suffix.lower() == ".mp4"),
            None,
        )
        frame_folder = self.root / participant / "rgb_frames" / video_id
        rate = self.rate_of(video_id)
        if video is not None:
            # Frame numbers count the file's frames: it must run at the rate the annotations assume.
            file_rate = probe(video).fps
            if abs(file_rate - float(rate)) > 0.05:
                raise ValueError(f"{video}: {file_rate:.3f} fps, but the video info CSV says {float(rate)}")
            frames = iter_frames(video)
            where = str(video)
        elif frame_folder.is_dir():
            images = sorted(frame_folder.glob("frame_*.jpg"))
            numbers = [int(p.stem.split("_")[1]) for p in images]
            if numbers != list(range(1, len(images) + 1)):
                missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))[:5]
                raise ValueError(f"{frame_folder}: frames are not numbered 1..{len(images)} (missing {missing})")
            frames = image_folder_frames(images, float(rate))
            where = str(frame_folder)
        else:
            raise FileNotFoundError(
                f"video {video_id}: neither {self.root / participant / 'videos' / video_id}.MP4 "
                f"nor {frame_folder} exists"
            )
        requests: list[ClipRequest] = []
        for row in item.options["rows"]:
            try:
                requests.extend(split_long(self.segment(row, rate), self.options.max_clip_seconds))
            except (ValueError, KeyError, SyntaxError) as exc:
                row_id = row.get("narration_id") or row.get("uid")
                yield Rejected(f"{video_id}#{row_id}", f"{row['annotation_file']}: row {row_id}: {exc}")
        requests.sort(key=lambda r: r.start)
        for result in self.episodes(self.clips(frames, requests, video_id, where), video_id):
            if isinstance(result, Episode):
                result.split = result.info.pop("split")
            yield result

    def segment(self, row: dict[str, str], rate: Fraction) -> ClipRequest:
        """The clip an annotation row asks for, with its labels; ValueError if the row is inconsistent."""
        row_id = row.get("narration_id") or row["uid"]
        start_frame, stop_frame = int(row["start_frame"]), int(row["stop_frame"])
        if not 1 <= start_frame <= stop_frame:
            raise ValueError(f"frames {start_frame}..{stop_frame} are not 1-based and increasing")
        start, stop = float((start_frame - 1) / rate), float(stop_frame / rate)
        start_ts, stop_ts = parse_timestamp(row["start_timestamp"]), parse_timestamp(row["stop_timestamp"])
        for name, stamp, frame_time in (("start", start_ts, start), ("stop", stop_ts, stop)):
            if abs(stamp - frame_time) > TIMESTAMP_SLACK_SEC + float(1 / rate):
                raise ValueError(
                    f"{name}_timestamp {row[f'{name}_timestamp']} ({stamp:.3f}s) disagrees with {name}_frame "
                    f"{row[f'{name}_frame']} ({frame_time:.3f}s at {float(rate):.3f} fps)"
                )
        labels: dict[str, Any] = {
            "narration_id": row_id,
            "participant_id": row["participant_id"],
            "video_id": row["video_id"],
            "verb": row["verb"],
            "noun": row["noun"],
            **{name: int(row[name]) for name in INT_COLUMNS},
            **{name: ast.literal_eval(row[name]) for name in LIST_COLUMNS},
            "start_frame": start_frame,
            "stop_frame": stop_frame,
            "start_timestamp": row["start_timestamp"],
            "stop_timestamp": row["stop_timestamp"],
            "annotation_file": row["annotation_file"],
            "split": row["split"],
        }
        return ClipRequest(key=row_id, start=start, stop=stop, language=row["narration"], info=labels)
