"""Drum onsets <-> Standard MIDI Files: GM drum notes on channel 10, velocities 1-127."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from idm.classes import CLASSES, GM_NOTES, GM_TO_CLASS
from idm.errors import AudioInputError
from idm.files import current_umask

__all__ = ["Onset", "read_onsets", "to_midi_velocity", "write_midi"]

DRUM_CHANNEL = 9  # channel 10, zero-based
TICKS_PER_BEAT = 960
TEMPO = 500_000  # 120 BPM: one tick = 1/1920 s
NOTE_SECONDS = 0.05


@dataclass(frozen=True)
class Onset:
    """One drum hit: project class name, time in seconds, MIDI velocity 1-127."""

    cls: str
    time: float
    velocity: int

    @property
    def note(self) -> int:
        return GM_NOTES[CLASSES.index(self.cls)]


def to_midi_velocity(v: np.ndarray | float) -> np.ndarray:
    """Model velocity (exp-sigmoid, 0..2, 1 = the trained reference level) -> MIDI 1-127."""
    return np.clip(np.rint(np.asarray(v, dtype=np.float64) / 2.0 * 127.0), 1, 127).astype(np.int64)


def _seconds_to_ticks(t: float) -> int:
    return round(t * 1e6 / TEMPO * TICKS_PER_BEAT)


def write_midi(onsets: list[Onset], path: str | Path, note_seconds: float = NOTE_SECONDS) -> None:
    """Write a type-1 MIDI file (tempo track + one drum track on channel 10), atomically."""
    path = Path(path)
    meta = mido.MidiTrack(
        [mido.MetaMessage("set_tempo", tempo=TEMPO, time=0), mido.MetaMessage("end_of_track", time=0)]
    )
    events: list[tuple[int, int, mido.Message]] = []
    for o in onsets:
        on = _seconds_to_ticks(o.time)
        off = on + max(1, _seconds_to_ticks(note_seconds))
        vel = int(np.clip(o.velocity, 1, 127))
        events.append((on, 1, mido.Message("note_on", channel=DRUM_CHANNEL, note=o.note, velocity=vel)))
        events.append((off, 0, mido.Message("note_off", channel=DRUM_CHANNEL, note=o.note, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1], e[2].note))  # note-offs first at equal ticks, then by note
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Drums", time=0)])
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, tracks=[meta, track])
    fd, tmp = tempfile.mkstemp(suffix=".mid", dir=path.parent)
    os.close(fd)
    try:
        mid.save(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private; the result gets the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_onsets(path: str | Path) -> list[Onset]:
    """Drum hits of a MIDI file (all tracks, any channel; tempo changes honoured).

    Notes are mapped to classes with :data:`idm.classes.GM_TO_CLASS`; unmapped notes are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioInputError(f"{path}: onset MIDI file not found")
    try:
        mid = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise AudioInputError(
            f"{path}: not a readable MIDI file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    out: list[Onset] = []
    t = 0.0
    for msg in mid:  # merged tracks, times in seconds
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0 and msg.note in GM_TO_CLASS:
            out.append(Onset(GM_TO_CLASS[msg.note], t, int(msg.velocity)))
    return out
