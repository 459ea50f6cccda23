"""Where a stream stands: the epoch and how many positions of its global order all ranks consumed.

Resuming is arithmetic on these two numbers (see partition.py), never a replay, so it takes the same time
at any point of the epoch, and it holds for any world size or worker count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

STATE_VERSION = 1


@dataclass(frozen=True)
class StreamState:
    epoch: int = 0
    consumed: int = 0  # positions of the epoch order consumed by all ranks together

    def advanced(self, global_batches: int, global_batch_size: int) -> StreamState:
        return StreamState(self.epoch, self.consumed + global_batches * global_batch_size)

    def to_dict(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self), "fingerprint": fingerprint}

    @classmethod
    def from_dict(cls, state: dict[str, Any], fingerprint: dict[str, Any]) -> StreamState:
        """Check that the state was saved by a stream over the same windows in the same order."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"stream state version {state.get('version')!r}, this wamdata reads {STATE_VERSION}")
        if state["fingerprint"] != fingerprint:
            changed = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
            raise ValueError(f"stream state was saved over different data or order settings: {changed} differ")
        return cls(int(state["epoch"]), int(state["consumed"]))
