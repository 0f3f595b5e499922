"""Drum onsets <-> Standard MIDI Files: GM drum notes on channel 10, velocities 1-127."""

from __future__ import annotations

import io
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from idm.classes import CLASSES, GM_NOTES, GM_TO_CLASS
from idm.errors import AudioInputError
from idm.files import current_umask

__all__ = [
    "NOTE_MAPS",
    "MidiStyle",
    "Onset",
    "load_note_map",
    "read_onsets",
    "to_midi_velocity",
    "write_midi",
]

DRUM_CHANNEL = 9  # channel 10, zero-based
TICKS_PER_BEAT = 960
TEMPO = 500_000  # 120 BPM: one tick = 1/1920 s
NOTE_SECONDS = 0.05
#: Largest onset MIDI file read (a long performance is well under 1 MiB).
MAX_MIDI_BYTES = 16 * 2**20


#: Named note maps: class -> MIDI note. ``gm``: General MIDI drums. ``td``: Roland V-Drums modules (TD-11/17/27,
#: the Groove MIDI Dataset's layout) and the drum samplers that follow them: rack toms on 48 and 45, floor 43.
NOTE_MAPS: dict[str, dict[str, int]] = {
    "gm": dict(zip(CLASSES, GM_NOTES, strict=True)),
    "td": {"kick": 36, "snare": 38, "hihat_closed": 42, "hihat_open": 46, "tom_floor": 43, "tom_mid": 45,
           "tom_high": 48, "crash": 49, "ride": 51},
}  # fmt: skip


def load_note_map(spec: str | Path) -> dict[str, int]:
    """A note map by name (:data:`NOTE_MAPS`) or from a YAML/JSON file of ``class: note`` (missing classes: GM).

    Raises :class:`AudioInputError`-free :class:`~idm.errors.IDMError` one-liners naming the problem.
    """
    from idm.errors import IDMError

    if str(spec) in NOTE_MAPS:
        return dict(NOTE_MAPS[str(spec)])
    path = Path(spec)
    if not path.is_file():
        raise IDMError(f"--note-map {spec}: not a map name ({', '.join(NOTE_MAPS)}) nor a file")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise IDMError(f"{path}: not a YAML/JSON note map ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise IDMError(f"{path}: a note map is a mapping of class name to MIDI note, e.g. 'tom_mid: 45'")
    out = dict(NOTE_MAPS["gm"])
    for k, v in raw.items():
        if k not in CLASSES:
            raise IDMError(f"{path}: unknown class {k!r} (classes: {', '.join(CLASSES)})")
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 127:
            raise IDMError(f"{path}: note of {k} must be an integer 0-127, got {v!r}")
        out[k] = v
    return out


@dataclass(frozen=True)
class MidiStyle:
    """How notes are written and sent: length, channel (1-16, 10 = GM drums), note map, file tempo.

    A note ends after ``note_seconds`` or just before the next hit of the same note, whichever is first, so
    notes of one drum never overlap.
    """

    note_seconds: float = NOTE_SECONDS
    channel: int = DRUM_CHANNEL + 1
    note_map: tuple[tuple[str, int], ...] = tuple(NOTE_MAPS["gm"].items())
    tempo_bpm: float = 120.0

    def __post_init__(self) -> None:
        from idm.errors import IDMError

        if not 0.001 <= self.note_seconds <= 10.0:
            raise IDMError(f"note length must be 1 ms to 10 s, got {self.note_seconds * 1000:g} ms")
        if not 1 <= self.channel <= 16:
            raise IDMError(f"MIDI channel must be 1-16, got {self.channel}")
        if not 20.0 <= self.tempo_bpm <= 400.0:
            raise IDMError(f"MIDI tempo must be 20-400 BPM, got {self.tempo_bpm:g}")

    @staticmethod
    def of(note_ms: float = NOTE_SECONDS * 1000, channel: int = DRUM_CHANNEL + 1, note_map: str | Path = "gm",
           tempo_bpm: float = 120.0) -> MidiStyle:  # fmt: skip
        """From command-line values (note length in ms, a map name or file)."""
        return MidiStyle(note_ms / 1000.0, channel, tuple(load_note_map(note_map).items()), tempo_bpm)

    def note(self, cls: str) -> int:
        return dict(self.note_map)[cls]

    @property
    def tempo_us(self) -> int:
        """Microseconds per beat of the file's tempo (what the ``set_tempo`` message holds)."""
        return round(60e6 / self.tempo_bpm)

    def ticks(self, seconds: float) -> int:
        """The MIDI file tick nearest to ``seconds`` (``TICKS_PER_BEAT`` per beat at the file's tempo)."""
        return round(seconds * 1e6 / self.tempo_us * TICKS_PER_BEAT)

    def file_time(self, seconds: float) -> float:
        """``seconds`` on the file's tick grid: the time a MIDI reader (mido) reports for a note written there."""
        return self.ticks(seconds) * self.tempo_us * 1e-6 / TICKS_PER_BEAT


@dataclass(frozen=True)
class Onset:
    """One drum hit: project class name, time in seconds, MIDI velocity 1-127, onset probability if known."""

    cls: str
    time: float
    velocity: int
    probability: float | None = None  #: the model's onset probability at the picked frame (0-1)

    @property
    def note(self) -> int:
        return GM_NOTES[CLASSES.index(self.cls)]


def to_midi_velocity(v: np.ndarray | float) -> np.ndarray:
    """Model velocity (exp-sigmoid, 0..2, 1 = the trained reference level) -> MIDI 1-127."""
    return np.clip(np.rint(np.asarray(v, dtype=np.float64) / 2.0 * 127.0), 1, 127).astype(np.int64)


def write_midi(
    onsets: list[Onset], path: str | Path, note_seconds: float | None = None, style: MidiStyle | None = None
) -> None:
    """Write a type-1 MIDI file (tempo track + one drum track), atomically.

    Notes sit at their onsets' seconds whatever the file's tempo; each ends ``style.note_seconds`` later or
    one tick before the next hit of the same note (never less than one tick).
    """
    style = style or MidiStyle()
    if note_seconds is not None:
        style = MidiStyle(note_seconds, style.channel, style.note_map, style.tempo_bpm)
    path = Path(path)
    tempo = style.tempo_us
    notes = dict(style.note_map)
    chan = style.channel - 1
    ticks = style.ticks

    meta = mido.MidiTrack(
        [mido.MetaMessage("set_tempo", tempo=tempo, time=0), mido.MetaMessage("end_of_track", time=0)]
    )
    hits = sorted((ticks(o.time), notes[o.cls], int(np.clip(o.velocity, 1, 127))) for o in onsets)
    length = max(1, ticks(style.note_seconds))
    next_on: dict[int, int] = {}
    events: list[tuple[int, int, mido.Message]] = []
    for on, note, vel in reversed(hits):  # from the end: the next hit of each note is known
        off = on + length
        if note in next_on:
            off = max(on + 1, min(off, next_on[note]))
        next_on[note] = on
        events.append((on, 1, mido.Message("note_on", channel=chan, note=note, velocity=vel)))
        events.append((off, 0, mido.Message("note_off", channel=chan, note=note, velocity=0)))
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
        size = path.stat().st_size
        if size > MAX_MIDI_BYTES:
            raise AudioInputError(f"{path}: {size} bytes; an onset MIDI file is at most {MAX_MIDI_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except OSError as e:
        raise AudioInputError(f"{path}: cannot read ({e.strerror or e})") from None
    out: list[Onset] = []
    try:  # mido parses untrusted bytes: any of these means a broken file, reported as one line
        mid = mido.MidiFile(file=io.BytesIO(data))
        if mid.type == 2:
            raise AudioInputError(
                f"{path}: a type-2 MIDI file (independent sequences) has no single timeline; save it as type 0 or 1"
            )
        if not isinstance(mid.ticks_per_beat, int) or mid.ticks_per_beat <= 0:
            raise AudioInputError(
                f"{path}: SMPTE time division ({mid.ticks_per_beat}) is not supported; save it with ticks per beat"
            )
        t = 0.0
        for msg in mid:  # merged tracks, times in seconds
            t += msg.time
            if msg.type == "note_on" and msg.velocity > 0 and msg.note in GM_TO_CLASS:
                out.append(Onset(GM_TO_CLASS[msg.note], t, int(msg.velocity)))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, struct.error, RecursionError) as e:
        raise AudioInputError(
            f"{path}: not a readable MIDI file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    if not all(math.isfinite(o.time) and o.time >= 0 for o in out):
        raise AudioInputError(f"{path}: not a readable MIDI file (note times are not finite and positive)")
    return out
