"""Where recordings go: an output folder that appears only when complete, and the MIDI file recorder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from idm.classes import CLASSES
from idm.errors import OutputError
from idm.files import process_alive, process_start, replace_dir
from idm.midi import MidiStyle, Onset, write_midi

__all__ = ["MidiRecorder", "OutputFolder", "check_output_file", "clean_stale"]


#: The file inside a folder being written that names its writer (pid, its start id, host).
OWNER_FILE = ".idm-owner"
#: The note left in a partial result (a run that did not reach the end of its input).
PARTIAL_NOTE = "PARTIAL.txt"
#: Suffixes of the hidden folders of a run in progress (the folder being written, a claim being made).
HIDDEN = (".partial", ".claim")


def _owner_text() -> str:
    pid = os.getpid()
    return json.dumps({"pid": pid, "start": process_start(pid), "host": socket.gethostname()})


def _owner(folder: Path) -> dict | None:
    """The writer recorded in a folder being written, or None (no owner file: not ours, or an older version)."""
    try:
        data = json.loads((folder / OWNER_FILE).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _owner_alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process (a shared folder): cannot tell, assume it runs
    return process_alive(int(owner["pid"]), str(owner.get("start", "")))


def clean_stale(out_dir: str | Path) -> list[str]:
    """Remove hidden partial folders (``.<name>.partial``) in ``out_dir`` whose writer is gone; report the others.

    A run killed outright (SIGKILL, power loss) leaves its unfinished folder behind; one whose owner file names
    a process that no longer runs is removed. One without an owner file (an older version, ``idm separate
    --backend torch``) is only reported. Returns one line per folder found.
    """
    notes: list[str] = []
    try:
        found = sorted(p for p in Path(out_dir).iterdir() if p.name.startswith(".") and p.name.endswith(HIDDEN))
    except OSError:
        return notes
    for p in found:
        if not p.is_dir():
            continue
        owner = _owner(p)
        if owner is None:
            notes.append(f"{p}: unfinished output of an interrupted run (not removed: unknown owner)")
        elif not _owner_alive(owner):
            shutil.rmtree(p, ignore_errors=True)
            if not p.exists():
                notes.append(f"removed {p}: unfinished output of a run that was killed (pid {owner['pid']})")
    return notes


def check_output_file(path: str | Path, force: bool = False, what: str = "the MIDI file") -> None:
    """Check before a run that ``path`` can be written at its end (a probe file is created and removed).

    Raises :class:`OutputError` if it exists (without ``force``), is a folder, or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for {what}")
    if path.exists() and not force:
        raise OutputError(f"{path}: file exists (use --force to replace it)")
    where = path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise OutputError(f"{path}: cannot write {what} ({where} is not a folder)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".idm-probe-", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{path}: cannot write {what} ({e.strerror or e})") from None


class OutputFolder:
    """``out_dir/name/`` written in a hidden folder ``out_dir/.name.partial`` and renamed into place by :meth:`commit`.

    The hidden folder is also the run's claim on the name: it is created whole (with an owner file naming this
    process) by one rename, which fails while another live run holds it, so two runs never write one output
    at once. Stale hidden folders of killed runs are removed on the way (:func:`clean_stale`; the lines are in
    :attr:`notes`). Without ``force``, :meth:`commit` never replaces a folder that appeared meanwhile: this
    run's result is kept beside it (``name-2``) and :class:`OutputError` says where. A run that did not
    reach the end of its input keeps its files with :meth:`keep_partial` (``name.partial/`` and a note), never
    under the final name.

    Raises :class:`OutputError` at construction if the target exists and ``force`` is not set, if another run
    is writing it, or if ``out_dir`` cannot be written.
    """

    def __init__(self, out_dir: str | Path, name: str, force: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.target = self.out_dir / name
        self.force = force
        if self.target.exists() and not force:
            raise OutputError(f"{self.target}: output folder exists (use --force to replace it)")
        self.path = self.out_dir / f".{name}.partial"
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.notes = clean_stale(self.out_dir)
            self._claim(name)
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot write output folder ({e.strerror or e})") from None

    def _claim(self, name: str) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".claim", dir=self.out_dir))
        try:
            (tmp / OWNER_FILE).write_text(_owner_text())
            for _ in range(2):
                try:
                    os.rename(tmp, self.path)  # fails while another run's folder (never empty) is there
                    return
                except OSError:
                    owner = _owner(self.path)
                    if owner is not None and _owner_alive(owner):
                        raise OutputError(
                            f"{self.target}: another run (pid {owner['pid']}) is writing this output now"
                        ) from None
                    if owner is None and self.path.exists():
                        raise OutputError(
                            f"{self.target}: {self.path} exists (an interrupted run's unfinished output?); remove it"
                        ) from None
                    shutil.rmtree(self.path, ignore_errors=True)  # its run is gone
            raise OutputError(f"{self.target}: cannot claim {self.path}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def commit(self) -> Path:
        """Move the finished folder to its target (replacing an old one, with ``force``, only after the move).

        Without ``force`` a target that appeared meanwhile is left alone: this run's result goes to the first
        free ``name-2``, ``name-3``... and :class:`OutputError` names both.
        """
        try:
            (self.path / OWNER_FILE).unlink(missing_ok=True)
            try:
                replace_dir(self.path, self.target, replace=self.force)
            except FileExistsError:
                kept = self._rename_free(self.target.name, "-")
                raise OutputError(
                    f"{self.target}: written by another run meanwhile (kept); this run's result is in {kept}"
                ) from None
        except OSError as e:
            raise OutputError(f"{self.target}: cannot write outputs ({e.strerror or e})") from None
        return self.target

    def _rename_free(self, base: str, sep: str) -> Path:
        """Rename the hidden folder to the first free ``base``, ``base<sep>2``, ... (never replacing anything)."""
        for i in range(1, 1000):
            dest = self.out_dir / (base if i == 1 else f"{base}{sep}{i}")
            if dest.exists():
                continue
            try:
                replace_dir(self.path, dest, replace=False)
                return dest
            except FileExistsError:
                continue
        raise OutputError(f"{self.path}: no free name to keep this run's result")

    def keep_partial(self, note: str) -> Path:
        """Keep an incomplete result as ``name.partial/`` (or ``name.partial-2``...) with ``note`` in PARTIAL.txt."""
        try:
            (self.path / OWNER_FILE).unlink(missing_ok=True)
            (self.path / PARTIAL_NOTE).write_text(note.rstrip() + "\n")
            return self._rename_free(f"{self.target.name}.partial", "-")
        except OSError as e:
            raise OutputError(f"{self.path}: cannot keep the partial result ({e.strerror or e})") from None

    def discard(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


class _Event(Protocol):
    cls: int
    velocity: int
    sample: int


class MidiRecorder:
    """Collects note events and writes them as a type-1 drum MIDI file (:func:`idm.midi.write_midi`).

    Times are aligned with the input: an event at output sample ``s`` is written at
    ``(s - latency) / sample_rate`` seconds, as ``idm separate`` writes the onset.
    """

    def __init__(self, sample_rate: int, latency: int, style: MidiStyle | None = None) -> None:
        self.sample_rate = int(sample_rate)
        self.latency = int(latency)
        self.style = style or MidiStyle()
        self.onsets: list[Onset] = []

    def add(self, events: Iterable[_Event]) -> None:
        for e in events:
            t = (e.sample - self.latency) / self.sample_rate
            self.onsets.append(Onset(CLASSES[e.cls], max(0.0, t), int(e.velocity), getattr(e, "probability", None)))

    def write(self, path: str | Path) -> Path:
        """Write the file atomically (temporary name, then rename)."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_midi(self.onsets, path, style=self.style)
        except OSError as e:
            raise OutputError(f"{path}: cannot write the MIDI file ({e.strerror or e})") from None
        return path
