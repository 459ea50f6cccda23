"""Ingest: native files -> a wamdata dataset, on Ray Data (see ``pipeline``)."""

from wamdata.ingest.pipeline import IngestResult, ingest

__all__ = ["IngestResult", "ingest"]
