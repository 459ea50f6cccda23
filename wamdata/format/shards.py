"""WebDataset shards: deterministic tar writing with recorded member offsets, and reads of one sample.

A sample is one episode: ``<key>.meta.json`` first, then ``<key>.<array>.npy`` and ``<key>.<camera>.<ext>``
in sorted order. Plain ``webdataset`` and ``tar`` read the shards; wamdata also reads one sample with a
single range request using the offsets stored in episodes.parquet.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from wamdata.format.schema import Episode, SourceSpec
from wamdata.media.codec import VideoCodec, encode_video

TAR_BLOCK = 512
TAR_RECORD = 20 * TAR_BLOCK
SHARD_NAME = "shard-{:06d}.tar"


def _padded(size: int, unit: int = TAR_BLOCK) -> int:
    return -(-size // unit) * unit


def _archive_bytes(content_bytes: int) -> int:
    """Size of a tar file whose members take content_bytes: two zero blocks, then padding to a record."""
    return _padded(content_bytes + 2 * TAR_BLOCK, TAR_RECORD)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def json_bytes(doc: dict[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces) so the same document always gives the same bytes."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Sample:
    """An encoded episode: its WebDataset key and its members in write order."""

    key: str
    meta: dict[str, Any]
    members: tuple[tuple[str, bytes], ...]

    @property
    def tar_bytes(self) -> int:
        return sum(TAR_BLOCK + _padded(len(data)) for _, data in self.members)


def encode_sample(episode: Episode, spec: SourceSpec) -> Sample:
    """Validate an episode against its source spec and encode it (arrays as .npy, cameras as video)."""
    episode.check(spec)
    meta = episode.meta(spec)
    members: list[tuple[str, bytes]] = [("meta.json", json_bytes(meta))]
    for name, array in sorted(episode.arrays.items()):
        members.append((f"{name}.npy", npy_bytes(array)))
    for camera, frames in sorted(episode.frames.items()):
        codec = VideoCodec.from_json(spec.cameras[camera].codec)
        members.append((f"{camera}.{codec.extension}", encode_video(frames, spec.fps, codec)))
    return Sample(key=episode.episode_id, meta=meta, members=tuple(members))


@dataclass(frozen=True)
class MemberLocation:
    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class SampleLocation:
    key: str
    shard: str
    offset: int
    size: int
    members: tuple[MemberLocation, ...]


@dataclass(frozen=True)
class ShardInfo:
    path: str
    sha256: str
    num_bytes: int


def _tar_header(name: str, size: int) -> bytes:
    # Fixed owner, mode and mtime: the same members must give the same bytes on every machine.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def tar_member(name: str, data: bytes) -> bytes:
    """One tar member: its header block (always one: USTAR), the data, zero padding to a block; the data
    starts TAR_BLOCK bytes in."""
    return _tar_header(name, len(data)) + data + b"\0" * (_padded(len(data)) - len(data))


def pack_tar(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A whole tar in memory, members in the order given, deterministic like the shards (side-car tars)."""
    body = b"".join(tar_member(name, data) for name, data in members)
    return body + b"\0" * (_archive_bytes(len(body)) - len(body))


class _OpenShard:
    """The shard being written: a temporary file, the running sha256 of its bytes and the write position."""

    def __init__(self, root: Path, path: str) -> None:
        self.path = path
        self.final = root / path
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.file = open(self.partial, "wb")  # noqa: SIM115 - closed by finish() or abort()
        self.hash = hashlib.sha256()
        self.position = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.hash.update(data)
        self.position += len(data)

    def finish(self) -> ShardInfo:
        """End the archive, make it durable and rename it into place."""
        self.write(b"\0" * (_archive_bytes(self.position) - self.position))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.final)
        return ShardInfo(self.path, self.hash.hexdigest(), self.position)

    def abort(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


class ShardWriter:
    """Packs samples, in the order given, into ``<prefix>/shard-NNNNNN.tar`` files of about target_bytes.

    The tar stream is written by hand rather than with ``tarfile.TarFile`` because we need each member's
    byte offset and a sha256 of the bytes as they are written. Each shard is written under a temporary
    name and renamed into place once complete, so a reader never sees a partial shard.
    """

    def __init__(self, root: str | os.PathLike, prefix: str, target_bytes: int, first_index: int = 0) -> None:
        self.root = Path(root)
        self.prefix = prefix
        self.target_bytes = target_bytes
        self.next_index = first_index
        self.shards: list[ShardInfo] = []
        self._current: _OpenShard | None = None

    def add(self, sample: Sample) -> SampleLocation:
        shard = self._current
        if shard is not None and _archive_bytes(shard.position + sample.tar_bytes) > self.target_bytes:
            self.shards.append(shard.finish())
            shard = None
        if shard is None:
            shard = self._current = _OpenShard(self.root, f"{self.prefix}/{SHARD_NAME.format(self.next_index)}")
            self.next_index += 1
        start = shard.position
        members = []
        for suffix, data in sample.members:
            name = f"{sample.key}.{suffix}"
            members.append(MemberLocation(name=name, offset=shard.position + TAR_BLOCK, size=len(data)))
            shard.write(tar_member(name, data))
        return SampleLocation(
            key=sample.key, shard=shard.path, offset=start, size=shard.position - start, members=tuple(members)
        )

    def close(self) -> list[ShardInfo]:
        if self._current is not None:
            self.shards.append(self._current.finish())
            self._current = None
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (finished shards stay)."""
        if self._current is not None:
            self._current.abort()
            self._current = None


def sha256_of(url: str, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def member_span(members: list[dict[str, Any]]) -> tuple[int, int]:
    """[start, end) byte range of a sample's members (episodes.parquet entries: name, offset, size).

    Members of a sample are contiguous, so the span of its arrays alone skips its video bytes."""
    return min(m["offset"] for m in members), max(m["offset"] + m["size"] for m in members)


def slice_members(blob: bytes, start: int, members: list[dict[str, Any]]) -> dict[str, bytes]:
    """Cut the members out of ``blob`` (the shard's bytes from offset ``start``): suffix -> bytes."""
    return {m["name"].split(".", 1)[1]: blob[m["offset"] - start : m["offset"] - start + m["size"]] for m in members}


def read_members(url: str, members: list[dict[str, Any]]) -> dict[str, bytes]:
    """Read the given members of one sample with one range read spanning them; suffix (``action.npy``) -> bytes."""
    start, end = member_span(members)
    with fsspec.open(url, "rb") as f:
        f.seek(start)
        blob = f.read(end - start)
    if len(blob) != end - start:
        raise OSError(f"{url}: short read at {start} (+{end - start}): got {len(blob)} bytes; the shard is truncated")
    return slice_members(blob, start, members)


def iter_samples(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Scan a whole shard in order, yielding (key, {suffix: bytes}) per sample, as WebDataset groups them.

    webdataset's ``tar_file_expander`` + ``group_by_keys`` do the same, but importing webdataset imports torch
    (its package ``__init__``), and this module must stay importable without it (``wamdata validate``)."""
    key = None
    group: dict[str, bytes] = {}
    with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for info in tar:
            if not info.isfile():
                continue
            member_key, suffix = info.name.split(".", 1)
            if member_key != key and group:
                yield key, group
                group = {}
            key = member_key
            group[suffix] = tar.extractfile(info).read()  # a regular file always has a reader
    if group:
        yield key, group


def load_npy(data: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
