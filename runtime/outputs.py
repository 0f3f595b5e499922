"""Where recordings go: an output folder that appears only when complete, and the MIDI file recorder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from idm.classes import CLASSES
from idm.errors import OutputError
from idm.files import replace_dir
from idm.midi import MidiStyle, Onset, write_midi

__all__ = ["MidiRecorder", "OutputFolder"]


class OutputFolder:
    """``out_dir/name/`` written in a hidden temporary folder beside it and renamed into place by :meth:`commit`.

    Raises :class:`OutputError` at construction if the target exists and ``force`` is not set, or if
    ``out_dir`` cannot be written.
    """

    def __init__(self, out_dir: str | Path, name: str, force: bool = False) -> None:
        self.target = Path(out_dir) / name
        if self.target.exists() and not force:
            raise OutputError(f"{self.target}: output folder exists (use --force to replace it)")
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out_dir))
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot write output folder ({e.strerror or e})") from None

    def commit(self) -> Path:
        """Move the finished folder to its target (replacing an old one only after the move succeeds)."""
        try:
            replace_dir(self.path, self.target)
        except OSError as e:
            raise OutputError(f"{self.target}: cannot write outputs ({e.strerror or e})") from None
        return self.target

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
