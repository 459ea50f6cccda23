"""The one place that starts or joins Ray, and scopes the Ray Data settings a run changes.

Ingest and ``label apply`` run on Ray Data: embedded in this process by default, or on a cluster at an
address. Settings they change on Ray Data's process-wide context (progress bars, how many failed blocks a
run tolerates) are put back when the run ends, so one run never changes the next one's behaviour.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import ray

# A task whose worker dies this many times more (an input that crashes its decoder, a lost node) is given up.
TASK_RETRIES = 2


class RaySession:
    """Join the cluster at ``address``, or start an embedded local Ray; leave an already connected one alone."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.started = False

    def __enter__(self) -> RaySession:
        if not ray.is_initialized():
            ray.init(address=self.address or "local", include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self.started = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            ray.shutdown()


@contextlib.contextmanager
def ray_data_settings(progress: bool, max_errored_blocks: int | None = None) -> Iterator[ray.data.DataContext]:
    """This driver's Ray Data context with progress bars (and the start-up banner) on or off, and optionally
    a number of failed blocks to tolerate (-1: any); restored on exit."""
    context = ray.data.DataContext.get_current()
    names = ["enable_progress_bars", "print_on_execution_start", "max_errored_blocks"]
    saved = {name: getattr(context, name) for name in names}
    context.enable_progress_bars = progress
    context.print_on_execution_start = progress
    if max_errored_blocks is not None:
        context.max_errored_blocks = max_errored_blocks
    try:
        yield context
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
