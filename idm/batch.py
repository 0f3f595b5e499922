"""Batches of ``idm separate``: folder inputs expanded to their audio files, files run in one or N processes.

Each file's outcome (folder written, or a one-line error) is handed to a callback as soon as it is known; a
failing file never stops the others. With ``jobs > 1`` each worker process builds its own separator once
(``spawn`` start method: no onnxruntime or torch state is shared across a fork) and takes the next file from a
queue when it is free.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idm.errors import AudioInputError, IDMError
from idm.runners import Progress, RunFile, RunnerSpec, build_runner

__all__ = ["AUDIO_EXTENSIONS", "Outcome", "expand_inputs", "run_batch"]

#: File name endings taken from a folder input (case-insensitive): what libsndfile reads.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64", ".rf64", ".caf",
     ".au", ".snd"}
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What became of one input: the folder written, or the one-line error."""

    path: Path
    folder: Path | None = None
    error: str | None = None


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Inputs with each folder replaced by its audio files (not recursive, hidden files skipped), sorted by name.

    Raises
    ------
    AudioInputError
        A folder holds no audio file (one line, naming the endings looked for).
    """
    out: list[Path] = []
    for p in inputs:
        if not p.is_dir():
            out.append(p)
            continue
        found = sorted(
            (f for f in p.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith(".")
             and f.is_file()),
            key=lambda f: f.name,
        )  # fmt: skip
        if not found:
            raise AudioInputError(f"{p}: folder has no audio files (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")
        out += found
    return out


# ---- worker side (module level: picklable under spawn) ------------------------------------------------------


def _one_line(path: Path, e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{path}: {type(e).__name__}{': ' + msg if msg else ''}"


def _worker(spec: RunnerSpec, todo: Any, done: Any, out: Path, force: bool) -> None:
    """A worker process: build a separator once, then separate the paths taken from ``todo`` until None."""
    run: RunFile | None = None
    setup: str | None = None
    try:
        run = build_runner(spec)
    except Exception as e:  # reported for every file this worker takes
        setup = str(e) if isinstance(e, IDMError) else _one_line(Path("worker"), e)
    while (path := todo.get()) is not None:
        if run is None:
            done.put(Outcome(path, error=f"{path}: {setup}"))
            continue
        try:
            done.put(Outcome(path, folder=run(path, out, force, None)))
        except IDMError as e:
            done.put(Outcome(path, error=str(e)))
        except Exception as e:  # one file's unexpected failure must not stop the others
            done.put(Outcome(path, error=_one_line(path, e)))


# ---- front door ---------------------------------------------------------------------------------------------


def run_batch(
    spec: RunnerSpec,
    inputs: list[Path],
    out: Path,
    force: bool,
    jobs: int,
    on_done: Callable[[Outcome], None],
    runner: RunFile | None = None,
    progress: Callable[[Path], Progress | None] | None = None,
    debug: bool = False,
) -> list[Outcome]:
    """Separate ``inputs`` into ``out``; ``on_done`` gets each outcome as it is known; returns them all.

    Parameters
    ----------
    spec
        How to build a separator (each worker builds one).
    inputs
        Audio files (folders already expanded).
    out, force
        Output folder; replace existing per-file folders.
    jobs
        Processes; 1 runs in this process with ``runner`` (built from ``spec`` if not given).
    on_done
        Called in this process with each file's :class:`Outcome`.
    progress
        ``progress(path)`` returns the in-file progress callback of one file (``jobs == 1`` only).
    debug
        Let errors propagate (tracebacks) instead of turning them into outcomes.
    """
    outcomes: list[Outcome] = []
    if jobs <= 1 or len(inputs) <= 1:
        run = runner or build_runner(spec)
        for path in inputs:
            try:
                res = Outcome(path, folder=run(path, out, force, progress(path) if progress else None))
            except IDMError as e:
                if debug:
                    raise
                res = Outcome(path, error=str(e))
            outcomes.append(res)
            on_done(res)
        return outcomes
    ctx = multiprocessing.get_context("spawn")
    todo, done = ctx.Queue(), ctx.Queue()
    n = min(jobs, len(inputs))
    for p in inputs:
        todo.put(p)
    for _ in range(n):
        todo.put(None)
    workers = [ctx.Process(target=_worker, args=(spec, todo, done, out, force), daemon=True) for _ in range(n)]
    for w in workers:
        w.start()
    try:
        while len(outcomes) < len(inputs):
            try:
                res = done.get(timeout=0.2)
            except queue.Empty:
                if any(w.is_alive() for w in workers):
                    continue
                try:  # the last ones may have arrived just as the workers ended
                    res = done.get(timeout=1.0)
                except queue.Empty:
                    break
            outcomes.append(res)
            on_done(res)
    finally:
        for w in workers:
            w.join(timeout=5.0)
            if w.is_alive():
                w.terminate()
    seen = {o.path for o in outcomes}
    for p in inputs:  # a worker that died (killed, crashed in native code) leaves its file without an outcome
        if p not in seen:
            res = Outcome(p, error=f"{p}: the worker process separating it died")
            outcomes.append(res)
            on_done(res)
    return outcomes
