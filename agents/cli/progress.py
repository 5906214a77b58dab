"""A progress bar for long simulations, on stderr (stdout keeps only the result)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["packet_progress"]


@contextmanager
def packet_progress(show: bool, total: int, label: str = "simulate") -> Iterator[Callable[..., None] | None]:
    """While the block runs, a rich bar ``label  ####  done/total  ETA`` on stderr, or nothing.

    Yields ``update(done, total=None)`` (packets done, and the total when it changes), or ``None``
    when ``show`` is false. The bar is removed when the block ends, however it ends. rich is
    imported only when the bar is shown.
    """
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=total)
    bar.start()

    def update(done: int, total: int | None = None) -> None:
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()
