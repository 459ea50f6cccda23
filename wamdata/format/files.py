"""Writing files and folders whole or not at all, and joining dataset URLs: what every stage that writes shares."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def join_url(root: str, relative: str) -> str:
    """Join a dataset root (local path or fsspec URL) and a relative posix path."""
    return f"{str(root).rstrip('/')}/{relative}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary name unique to this process, fsync, then rename
    (several processes may write the same path, e.g. a retried Ray task and its first attempt)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def write_parquet(path: Path, table: pa.Table) -> None:
    """A zstd-compressed parquet file, written atomically."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    write_atomic(path, buffer.getvalue())


def replace_folder(folder: Path, complete: Path) -> None:
    """Put the finished folder ``complete`` in the place of ``folder``: a reader sees the old one or the new one,
    never a mixture (the old one is moved aside first, since a folder cannot be renamed over another)."""
    previous = folder.with_name(f".{folder.name}.previous")
    if folder.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(folder, previous)
    os.replace(complete, folder)
    shutil.rmtree(previous, ignore_errors=True)
