"""Note events as CSV and JSON beside the MIDI file: one row per hit, at the MIDI file's note times.

Columns: ``time`` (seconds from the start of the input), ``class`` (project class name), ``note`` (the MIDI note
after the note map), ``velocity`` (1-127), ``probability`` (the model's onset probability at the picked frame,
empty / ``null`` when unknown, e.g. for user-given onsets). Times are on the MIDI file's tick grid
(:meth:`idm.midi.MidiStyle.file_time`), so a row and its MIDI note have the same time when both are read back.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from idm.errors import ConfigError, OutputError
from idm.files import current_umask
from idm.midi import MidiStyle, Onset

__all__ = ["COLUMNS", "EVENT_FORMATS", "EventRow", "event_rows", "parse_event_formats", "write_events"]

#: Formats ``--events`` accepts, in the order files are written.
EVENT_FORMATS = ("csv", "json")
#: Columns of the CSV file (and keys of each JSON event).
COLUMNS = ("time", "class", "note", "velocity", "probability")


@dataclass(frozen=True)
class EventRow:
    """One note event as written: seconds on the MIDI tick grid, class, MIDI note, velocity, probability."""

    time: float
    cls: str
    note: int
    velocity: int
    probability: float | None


def parse_event_formats(spec: str) -> tuple[str, ...]:
    """``none``, ``csv``, ``json``, ``both`` or a comma list (``csv,json``) -> the formats to write.

    Raises
    ------
    ConfigError
        An unknown word, with the accepted ones.
    """
    words = [w.strip().lower() for w in spec.split(",") if w.strip()]
    out: list[str] = []
    for w in words or ["none"]:
        if w == "none":
            continue
        if w == "both":
            out += EVENT_FORMATS
        elif w in EVENT_FORMATS:
            out.append(w)
        else:
            raise ConfigError(f"--events {spec}: expected none, csv, json or both")
    return tuple(f for f in EVENT_FORMATS if f in out)


def event_rows(onsets: list[Onset], style: MidiStyle | None = None) -> list[EventRow]:
    """The rows of ``onsets`` in the MIDI file's order (time, note, velocity), times on its tick grid."""
    style = style or MidiStyle()
    notes = dict(style.note_map)
    rows = [
        EventRow(style.file_time(max(0.0, o.time)), o.cls, notes[o.cls], int(min(127, max(1, o.velocity))),
                 None if o.probability is None else float(o.probability))
        for o in onsets
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (style.ticks(r.time), r.note, r.velocity))


def _csv_text(rows: list[EventRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        prob = "" if r.probability is None else f"{r.probability:.6f}"
        w.writerow([repr(r.time), r.cls, r.note, r.velocity, prob])
    return buf.getvalue()


def _json_text(rows: list[EventRow], style: MidiStyle, source: str | None) -> str:
    doc = {
        "format": "idm-note-events",
        "version": 1,
        "source": source,
        "columns": list(COLUMNS),
        "midi": {"channel": style.channel, "tempo_bpm": style.tempo_bpm, "note_map": dict(style.note_map)},
        "events": [
            {"time": r.time, "class": r.cls, "note": r.note, "velocity": r.velocity,
             "probability": None if r.probability is None else round(r.probability, 6)}
            for r in rows
        ],
    }  # fmt: skip
    return json.dumps(doc, indent=1) + "\n"


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file beside it, then rename)."""
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_events(
    onsets: list[Onset],
    base: str | Path,
    formats: tuple[str, ...],
    style: MidiStyle | None = None,
    source: str | None = None,
) -> list[Path]:
    """Write ``base.csv`` and/or ``base.json`` (``base``: the MIDI file's path without its suffix).

    Parameters
    ----------
    onsets
        The hits written to the MIDI file.
    base
        Path without suffix, e.g. ``out/song/song``.
    formats
        Any of :data:`EVENT_FORMATS`.
    style
        The MIDI file's style (note map, tempo: the tick grid of the times).
    source
        Name of the input recorded in the JSON file.

    Returns
    -------
    list of Path
        The files written.
    """
    style = style or MidiStyle()
    rows = event_rows(onsets, style)
    base = Path(base)
    written = []
    for fmt in formats:
        path = base.with_name(base.name + "." + fmt)
        text = _csv_text(rows) if fmt == "csv" else _json_text(rows, style, source)
        try:
            _write_text(path, text)
        except OSError as e:
            raise OutputError(f"{path}: cannot write note events ({e.strerror or e})") from None
        written.append(path)
    return written
