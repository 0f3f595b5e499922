"""What ``idm separate`` shows while it works: a bar per file (analysis then rendering, with an ETA) and one for
the batch, on stderr, only on a terminal and without ``--quiet``; errors once on stderr, results on stdout."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import typer

__all__ = ["SeparateView"]


class SeparateView:
    """Progress bars and messages of one ``idm separate`` run; use as a context manager.

    Parameters
    ----------
    n_files
        Inputs in the batch (the batch bar is shown for more than one).
    quiet
        No bars and no result lines (errors are still printed).
    """

    def __init__(self, n_files: int, quiet: bool) -> None:
        self.quiet = quiet
        self.n_files = n_files
        self.finished = 0
        self._file: Any = None
        self.live = False
        self.progress: Any = None
        if quiet:  # nothing to draw: rich is not even imported (a scripted run starts faster)
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
            redirect_stdout=False,
            redirect_stderr=False,
            transient=True,
        )
        self._batch = self.progress.add_task(f"files 0/{n_files}", total=n_files, visible=n_files > 1)

    def __enter__(self) -> SeparateView:
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.__exit__(et, ev, tb)

    def file_progress(self, path: Path) -> Any:
        """The in-file callback ``(stage, done, total)`` of ``path``: analysis is the first half, rendering the rest."""
        if self._file is not None:
            self.progress.remove_task(self._file)
        self._file = self.progress.add_task(f"{path.name}: analysing", total=None)

        def update(stage: str, done: int, total: int) -> None:
            offset = total if stage == "rendering" else 0
            self.progress.update(self._file, description=f"{path.name}: {stage}", completed=offset + done,
                                 total=2 * max(1, total))  # fmt: skip

        return update

    def done(self, path: Path, folder: Path | None, error: str | None) -> None:
        """One file finished: its result on stdout (unless quiet) or its error once on stderr."""
        if error is not None:
            self.error(error)
        elif not self.quiet:
            line = f"{path} -> {folder}/"
            if self.live:
                self.console.print(line, highlight=False, markup=False, soft_wrap=True)
            else:
                typer.echo(line)
        self.finished += 1
        if self.progress is not None:
            self.progress.update(
                self._batch, completed=self.finished, description=f"files {self.finished}/{self.n_files}"
            )

    def error(self, msg: str) -> None:
        """``error: msg`` on stderr, one line."""
        if self.live:
            self.console.print(f"error: {msg}", highlight=False, markup=False, soft_wrap=True)
        else:
            typer.echo(f"error: {msg}", err=True)
