"""Progress bars for long work (rich), quiet when output is not a terminal."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

# Messages go to stderr so that stdout stays clean for machine-readable output.
# soft_wrap: a message stays one line (rich would otherwise break it at 80 columns when piped).
console = Console(stderr=True, highlight=False, soft_wrap=True)


def enabled() -> bool:
    if os.environ.get("KWS_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


def description_column() -> TextColumn:
    """A bar's label, shown as plain text: descriptions hold file names such as "take[2].wav"."""
    return TextColumn("{task.description}", style="bold", markup=False)


def make_progress() -> Progress:
    return Progress(
        description_column(),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled(),
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` showing a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def info(message: str) -> None:
    console.print(escape(message))  # file names such as "take[2].wav" are text, not rich markup


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {escape(message)}")
