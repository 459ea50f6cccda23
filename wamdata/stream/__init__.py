"""Streaming training windows to multi-node trainers: exact, elastic, resumable, remote.

One module per concern, in the order a sample flows through them::

    index      every training window of the datasets (episode, anchor step), numbered 0..N-1
    order      the epoch's global order: a pure function of (index, seed, epoch)
    partition  that order split over ranks x dataloader workers, equal batches per rank, tail policy
    cache      remote shards fetched into a bounded local cache, sha256-verified, prefetched
    reader     the raw bytes of an episode's members (local range reads or the cache)
    window     one window's frames, actions, state and masks from those bytes
    labels     label side-cars (labels/<labeler>/*.tar) cut to the window
    normalize  per-embodiment normalization of actions and state, and its inverse
    loader     the torch IterableDataset and the DataLoader helper with state_dict / load_state_dict
"""

from wamdata.stream.index import WindowIndex, WindowSpec
from wamdata.stream.loader import StreamConfig, StreamLoader, WindowStream
from wamdata.stream.normalize import Normalizer

__all__ = ["Normalizer", "StreamConfig", "StreamLoader", "WindowIndex", "WindowSpec", "WindowStream"]
