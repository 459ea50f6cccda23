"""The toy world's human-hand rendering exported as EPIC-KITCHENS (videos + narrated segments, no actions)
and ingested back with the epic_kitchens adapter: one episode per segment, text and frames aligned."""

from __future__ import annotations

from pathlib import Path

from conftest import ingest
from wamdata.media.codec import psnr
from wamdata.sources import adapter_for
from wamdata.toy.export import export_epic_kitchens
from wamdata.toy.world import generate_episode


def test_export_and_ingest_round_trip(tmp_path: Path) -> None:
    rows = export_epic_kitchens(tmp_path / "epic", videos=2, segments_per_video=3, first_seed=7, max_steps=24)
    assert len(rows) == 6 and (tmp_path / "epic" / "P00" / "videos" / "P00_02.MP4").is_file()
    adapter = adapter_for("epic_kitchens", str(tmp_path / "epic"), video={"pix_fmt": "yuv444p"})
    dataset, rejected = ingest(adapter, tmp_path / "out")
    assert rejected == [] and len(dataset) == 6
    for i in range(len(dataset)):
        episode = dataset.read_episode(i)
        meta = episode.meta
        seed = 7 + 3 * (int(meta["info"]["video_id"][-2:]) - 1) + int(meta["info"]["narration_id"][-1])
        truth = generate_episode(seed, "human_hand", max_steps=24)
        assert meta["language"] == truth.language and meta["has_actions"] is False
        assert meta["num_steps"] == len(truth.frames)
        assert psnr(episode.frames("head"), truth.frames) >= 35.0
