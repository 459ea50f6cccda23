"""Remote shards fetched whole into a local cache folder: bounded size, LRU eviction, prefetch, retries,
and the sha256 recorded in episodes.parquet checked on every download.

Files are named by their sha256 (content addressed), so two datasets sharing a shard share the file, and
several dataloader workers can share one folder: a download goes to a private temporary name and is renamed
into place only once verified. A worker may evict a file another worker still has open; on POSIX the open
handle stays readable, and a reader that finds a file gone fetches it again.

fsspec does the transport (any protocol it knows); it neither verifies content nor bounds a cache folder
(its ``filecache`` has no size limit and no checksum), which is why this module exists.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import fsspec

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 22


class ChecksumError(OSError):
    """A download whose sha256 differs from the one recorded in episodes.parquet."""


class ShardCache:
    def __init__(
        self,
        directory: str | os.PathLike,
        limit_bytes: int,
        retries: int = 4,
        backoff_s: float = 0.25,
        prefetch_threads: int = 1,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.limit_bytes = limit_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self._lock = threading.Lock()
        self._pending: dict[str, Future[Path]] = {}
        self._pinned: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=prefetch_threads, thread_name_prefix="wamdata-prefetch")

    def path_of(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.tar"

    def get(self, url: str, sha256: str) -> Path:
        """The local path of the verified shard, downloading it (or waiting for its prefetch) if needed."""
        path = self.path_of(sha256)
        with self._lock:
            self._pinned = {sha256}
            future = self._pending.get(sha256)
        if future is not None:
            future.result()
        elif path.exists():
            os.utime(path)  # mtime is the LRU clock shared by every process using the folder
        else:
            self._fetch(url, sha256)
        self._evict()
        return path

    def prefetch(self, url: str, sha256: str) -> None:
        """Start downloading a shard in the background unless it is cached or already on its way."""
        with self._lock:
            if sha256 in self._pending or self.path_of(sha256).exists():
                return
            future = self._pool.submit(self._fetch, url, sha256)
            self._pending[sha256] = future
        future.add_done_callback(lambda _: self._forget(sha256))

    def _forget(self, sha256: str) -> None:
        with self._lock:
            self._pending.pop(sha256, None)

    def _fetch(self, url: str, sha256: str) -> Path:
        final = self.path_of(sha256)
        error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            partial = final.with_name(f"{final.name}.{uuid.uuid4().hex}.partial")
            try:
                digest = hashlib.sha256()
                with fsspec.open(url, "rb") as source, open(partial, "wb") as out:
                    while chunk := source.read(CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != sha256:
                    raise ChecksumError(f"{url}: sha256 {digest.hexdigest()} differs from episodes.parquet's {sha256}")
                os.replace(partial, final)
                self._evict()
                return final
            except FileNotFoundError:
                partial.unlink(missing_ok=True)
                raise
            except Exception as e:  # noqa: BLE001 - any transport failure is retried, then reported with its url
                partial.unlink(missing_ok=True)
                error = e
                log.warning("fetch %s failed (attempt %d of %d): %s", url, attempt + 1, self.retries + 1, e)
        raise OSError(f"{url}: download failed after {self.retries + 1} attempts: {error}") from error

    def _evict(self) -> None:
        """Delete least recently used shards until the folder fits the limit (the pinned one always stays)."""
        entries = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".tar"):
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue  # evicted by another worker meanwhile
                entries.append((stat.st_mtime, stat.st_size, entry.name))
        total = sum(size for _, size, _ in entries)
        with self._lock:
            keep = {f"{sha}.tar" for sha in self._pinned | set(self._pending)}
        for _, size, name in sorted(entries):
            if total <= self.limit_bytes:
                break
            if name in keep:
                continue
            (self.directory / name).unlink(missing_ok=True)
            total -= size

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
