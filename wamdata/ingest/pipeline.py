"""Ingest: native files -> a wamdata dataset, on Ray Data, the same on a laptop and on a cluster.

    adapter.work_items()  ->  Ray Data map_batches (read -> standardize -> validate -> encode video), a few items a task
                          ->  each finished item staged atomically as its own file, keyed by the item's key
                          ->  the driver packs the staged samples into shards in work-item order (DatasetWriter)
                              and writes episodes.parquet, dataset.json (with stats) and quarantine.parquet

Ray does the scheduling, retries and progress. What it cannot give is determinism and resumability, so
the staging is ours: a retried task overwrites its own staged file (no duplicates), a re-run skips items
already staged (resume), and shards are assembled in work-item order by one writer, so the output has
the same bytes whatever the cluster, the number of workers or the order tasks finished in. The staging
folder sits beside the output and must be on a file system every node sees (one host, NFS, ...). A staged
item is a tar like the shards (``item.json`` with the item's rejections or error, then its samples'
members), so nothing a user's data passes through is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from tqdm import tqdm

from wamdata.cluster import TASK_RETRIES, RaySession, ray_data_settings
from wamdata.format.files import write_atomic
from wamdata.format.schema import SourceSpec
from wamdata.format.shards import Sample, encode_sample, iter_samples, json_bytes, pack_tar
from wamdata.format.writer import DEFAULT_SHARD_BYTES, DatasetSummary, DatasetWriter
from wamdata.sources import Rejected, SourceAdapter, WorkItem, adapter_for
from wamdata.sources.base import DefaultChosen, InputWarning

MAX_ITEMS_PER_TASK = 16
# What adapters warn users about; read on a Ray worker, these travel with the staged item to the driver.
USER_WARNINGS = {category.__name__: category for category in (InputWarning, DefaultChosen)}
ITEM_RECORD = "item.json"  # first member of a staged tar; sample keys always hold a "-", so never "item"


@dataclass
class StagedItem:
    """What one work item produced: its encoded samples and the parts it rejected, or why it failed whole."""

    key: str
    path: str
    samples: list[Sample] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    error: str | None = None
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (category name, message)


@dataclass
class IngestResult:
    summary: DatasetSummary
    quarantined: list[dict[str, str]]
    skipped_items: int
    seconds: float


def staging_dir_for(out: Path) -> Path:
    return out.with_name(f".{out.name}.ingest")


def staged_path(staging: Path, key: str) -> Path:
    return staging / "items" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.tar"


def read_item(adapter: SourceAdapter, specs: dict[str, SourceSpec], item: WorkItem) -> StagedItem:
    """Read, validate and encode one work item; any failure of the input becomes a quarantine reason. What the
    adapter warns about while reading (on a Ray worker, where no user sees it) is kept with the item."""
    staged = StagedItem(item.key, item.path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for result in adapter.read(item):
                if isinstance(result, Rejected):
                    staged.rejected.append(result)
                else:
                    staged.samples.append(encode_sample(result, specs[result.source]))
        except Exception as e:  # noqa: BLE001 - bad input of any kind (h5py, tf, av, parquet errors) is quarantined
            staged = StagedItem(item.key, item.path, error=f"{type(e).__name__}: {e}")
    staged.warnings = [(w.category.__name__, str(w.message)) for w in caught if w.category.__name__ in USER_WARNINGS]
    if staged.error is None and not staged.samples and not staged.rejected:
        staged.error = "no episodes in this input"
    return staged


def stage_item(adapter: SourceAdapter, specs: dict[str, SourceSpec], item: WorkItem, staging: Path) -> StagedItem:
    staged = read_item(adapter, specs, item)
    record = {"key": staged.key, "path": staged.path, "error": staged.error,
              "rejected": [[r.key, r.reason] for r in staged.rejected], "warnings": staged.warnings}
    members = [(ITEM_RECORD, json_bytes(record))]
    members += [(f"{sample.key}.{suffix}", data) for sample in staged.samples for suffix, data in sample.members]
    write_atomic(staged_path(staging, item.key), pack_tar(members))
    return staged


def load_staged(staging: Path, key: str) -> StagedItem:
    groups = iter_samples(str(staged_path(staging, key)))
    _, first = next(groups)
    record = json.loads(first["json"])
    samples = [Sample(key=sample_key, meta=json.loads(members["meta.json"]), members=tuple(members.items()))
               for sample_key, members in groups]
    return StagedItem(record["key"], record["path"], samples, [Rejected(k, r) for k, r in record["rejected"]],
                      record["error"], [(category, message) for category, message in record["warnings"]])


def _prepare_staging(staging: Path, run: dict[str, Any]) -> None:
    """Keep a previous run's staged items only if it was the same ingest (same format, input, options)."""
    run_file = staging / "run.json"
    if staging.exists() and (not run_file.exists() or json.loads(run_file.read_text()) != run):
        shutil.rmtree(staging)
    (staging / "items").mkdir(parents=True, exist_ok=True)
    write_atomic(run_file, json.dumps(run, sort_keys=True).encode())


def items_per_task(num_items: int, num_cpus: int) -> int:
    """Work items per Ray task: a task costs ~50-80 ms of scheduling, more than a small episode takes to encode,
    so small items are grouped; at least 4 tasks per CPU are kept for balance, and at most 16 items per task
    so a retried task redoes little (its items already staged are skipped anyway)."""
    return max(1, min(MAX_ITEMS_PER_TASK, num_items // (4 * max(num_cpus, 1))))


def run_stage_tasks(
    adapter: SourceAdapter,
    specs: dict[str, SourceSpec],
    items: list[WorkItem],
    staging: Path,
    progress: bool,
    per_task: int | None = None,
) -> None:
    """Ray Data tasks over the pending work items; each item is staged before its task finishes.

    Bad input does not raise (it is staged as a quarantine record), so Ray's retries only meet a worker that
    died: a lost node or an OOM kill is retried; a task whose worker dies TASK_RETRIES + 1 times (an input
    that crashes its decoder) is given up, the run goes on, and its unstaged items are left to the caller.
    """
    if not items:
        return

    def stage_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        failed = []
        for index in batch["index"]:
            item = items[int(index)]
            if staged_path(staging, item.key).exists():  # staged by an earlier attempt of this task
                failed.append(False)
                continue
            failed.append(stage_item(adapter, specs, item, staging).error is not None)
        return {"index": batch["index"], "failed": np.array(failed)}

    per_task = per_task or items_per_task(len(items), int(ray.cluster_resources().get("CPU", 1)))
    # Any number of failed blocks: a block fails only when its worker died TASK_RETRIES + 1 times (bad input is
    # staged as a quarantine record instead), and the caller quarantines what such a block left unstaged.
    with ray_data_settings(progress, max_errored_blocks=-1):
        rows = ray.data.from_items([{"index": i} for i in range(len(items))],
                                   override_num_blocks=-(-len(items) // per_task))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates ray_remote_args but has no named max_retries yet; its default (-1) would retry
            # a crashing input forever.
            warnings.simplefilter("ignore", DeprecationWarning)
            staged = rows.map_batches(stage_batch, batch_size=None, num_cpus=1, max_retries=TASK_RETRIES)
        for _ in staged.iter_batches(batch_size=None):
            pass


def stage_all(
    adapter: SourceAdapter, specs: dict[str, SourceSpec], items: list[WorkItem], staging: Path, progress: bool
) -> None:
    """Stage every item; items of a task that kept dying are tried once more one per task, so only the
    input that kills its worker is left unstaged, not the ones grouped with it."""
    run_stage_tasks(adapter, specs, items, staging, progress)
    unstaged = [item for item in items if not staged_path(staging, item.key).exists()]
    run_stage_tasks(adapter, specs, unstaged, staging, progress, per_task=1)


def ingest(
    format: str,
    input: str,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    address: str | None = None,
    limit: int | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: bool = True,
    adapter: SourceAdapter | None = None,
    **options: Any,
) -> IngestResult:
    """Ingest ``input`` (read by the adapter registered as ``format``) into the dataset folder ``out``.

    ``limit`` keeps the first N work items (an episode, or a file of episodes, depending on the format).
    Re-running the same command after an interruption skips the items already staged and gives the same
    bytes as an uninterrupted run. ``adapter`` replaces the registered one (an instance for ``format``).
    """
    started = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    adapter = adapter or adapter_for(format, input, **options)
    specs = {spec.name: spec for spec in adapter.specs()}
    items = adapter.work_items()[:limit]
    staging = staging_dir_for(out)
    run = {"format": format, "input": str(input), "options": adapter.options_record(), "limit": limit,
           "shard_bytes": shard_bytes, "name": name}
    _prepare_staging(staging, run)
    pending = [item for item in items if not staged_path(staging, item.key).exists()]
    with RaySession(address):
        stage_all(adapter, specs, pending, staging, progress)
    seen: set[str] = set()
    warned: set[tuple[str, str]] = set()
    with DatasetWriter(out, name or adapter.default_name(), specs.values(), shard_bytes,
                       adapter.dataset_description()) as writer:
        for item in tqdm(items, desc="write shards", unit="item", disable=not progress):
            if not staged_path(staging, item.key).exists():
                staged = StagedItem(item.key, item.path, error=f"the Ray task reading it died {TASK_RETRIES + 1} "
                                    "times (its worker crashed or was killed)")
            else:
                staged = load_staged(staging, item.key)
            for category, message in staged.warnings:
                if (category, message) not in warned:  # once per run, not once per item that found it
                    warned.add((category, message))
                    warnings.warn(message, USER_WARNINGS[category], stacklevel=2)
            duplicates = [s.key for s in staged.samples if s.key in seen]
            if duplicates:
                staged = StagedItem(item.key, item.path, error=f"episode ids already ingested: {duplicates}")
            if staged.error is not None:
                writer.quarantine(item.key, item.path, staged.error)
                continue
            for part in staged.rejected:
                writer.quarantine(part.key, item.path, part.reason)
            for sample in staged.samples:
                seen.add(sample.key)
                writer.add_sample(sample)
        summary = writer.close()
    shutil.rmtree(staging)
    return IngestResult(summary, writer.quarantined, len(items) - len(pending), time.perf_counter() - started)
