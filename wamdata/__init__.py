"""wamdata: the data engine for World Action Models (ingest, label, mix, stream, train)."""

__version__ = "0.1.0"
