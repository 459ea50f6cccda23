"""Source adapters: one small file per native format, registered by name.

An adapter turns one input (a folder, a file, a URL) into work items and each work item into Episodes.
The ingest pipeline parallelizes over work items, so a work item is the unit of retry, of quarantine
and of resume: one file, or one episode of a multi-episode file. ``adapter_for("lerobot", path)`` imports
``wamdata.sources.lerobot`` and returns its registered adapter; nothing else needs to know the list.
Shared helpers live in ``base`` (the contract, the registry, typed options, the helpers every format uses:
file discovery, natural order, stream lengths, named slices, JSON values, per-file errors) and ``clips``
(cutting videos into clips). ``InputError`` is bad input named by file and reason; ``InputWarning`` metadata
that disagrees with the files; ``DefaultChosen`` a setting the adapter chose where the user left it open.
"""

from wamdata.sources.base import (
    DefaultChosen,
    InputError,
    InputWarning,
    Rejected,
    SourceAdapter,
    WorkItem,
    adapter_for,
    available_formats,
)

__all__ = ["DefaultChosen", "InputError", "InputWarning", "Rejected", "SourceAdapter", "WorkItem", "adapter_for",
           "available_formats"]
