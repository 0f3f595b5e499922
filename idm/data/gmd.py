"""Groove MIDI Dataset loader: ``info.csv`` splits, MIDI performances as class events (22-to-9 notes)."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from idm.classes import CLASSES, GM_NOTES, GM_TO_CLASS
from idm.errors import DataError

__all__ = ["SPLITS", "Events", "GrooveMidi", "Performance", "read_events"]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: File of pre-parsed events that ``idm data pack`` writes into a pack's GMD root.
EVENTS_CACHE = "events.npz"
_INFO_COLUMNS = ("drummer", "session", "id", "style", "bpm", "beat_type", "time_signature", "midi_filename",
                 "duration", "split")  # fmt: skip


@dataclass(frozen=True, eq=False)
class Events:
    """Drum hits sorted by time: seconds, project class index, MIDI velocity 1-127, original MIDI note."""

    time: np.ndarray  # float64 [E]
    cls: np.ndarray  # int64 [E]
    velocity: np.ndarray  # int64 [E]
    note: np.ndarray  # int64 [E]

    def __len__(self) -> int:
        return int(self.time.size)

    @staticmethod
    def from_lists(time: list[float], cls: list[int], velocity: list[int], note: list[int] | None = None) -> Events:
        """Events from parallel lists (sorted by time, then class); ``note`` defaults to each class's GM note."""
        t = np.asarray(time, dtype=np.float64)
        c = np.asarray(cls, dtype=np.int64)
        v = np.asarray(velocity, dtype=np.int64)
        if c.size and (c.min() < 0 or c.max() >= len(CLASSES)):
            raise DataError(f"events: class index outside 0..{len(CLASSES) - 1}")
        n = np.asarray(note if note is not None else [GM_NOTES[i] for i in c], dtype=np.int64)
        if not (t.shape == c.shape == v.shape == n.shape):
            raise DataError("events: time, class, velocity and note lists differ in length")
        if v.size and (v.min() < 1 or v.max() > 127):
            raise DataError("events: velocity outside 1..127")
        order = np.lexsort((c, t))
        return Events(t[order], c[order], v[order], n[order])

    def select(self, mask: np.ndarray) -> Events:
        """The events where ``mask`` is true."""
        return Events(self.time[mask], self.cls[mask], self.velocity[mask], self.note[mask])

    def window(self, start: float, end: float, pre: float = 0.0) -> Events:
        """Events with ``start - pre <= time < end``, times made relative to ``start``."""
        lo, hi = np.searchsorted(self.time, [start - pre, end], side="left")
        return Events(self.time[lo:hi] - start, self.cls[lo:hi], self.velocity[lo:hi], self.note[lo:hi])


def read_events(path: str | Path) -> Events:
    """Drum hits of a MIDI file (all tracks, tempo changes honoured) mapped by :data:`GM_TO_CLASS`.

    GMD's Roland TD-11 notes fold into the 9 classes (pedal hat 44 -> closed hat, ride bell 53 ->
    ride, rims and edges -> their drum); unmapped notes are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: MIDI file not found")
    try:
        mid = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a readable MIDI file ({why})") from None
    t = 0.0
    times: list[float] = []
    notes: list[int] = []
    vels: list[int] = []
    for msg in mid:
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0 and msg.note in GM_TO_CLASS:
            times.append(t)
            notes.append(msg.note)
            vels.append(msg.velocity)
    cls = [CLASSES.index(GM_TO_CLASS[n]) for n in notes]
    return Events.from_lists(times, cls, vels, notes)


@dataclass(frozen=True)
class Performance:
    """One GMD performance (a row of ``info.csv``)."""

    id: str
    drummer: str
    style: str
    bpm: int
    beat_type: str
    time_signature: str
    midi_filename: str  # relative to the dataset root
    duration: float
    split: str


class GrooveMidi:
    """The Groove MIDI Dataset at ``root`` (``info.csv`` + ``drummerN/`` folders), or the GMD part of a data pack.

    Parameters
    ----------
    root
        Dataset root. Parsed events are kept in memory; a pack's root also holds them pre-parsed
        (``events.npz``), checked against the MIDI files' sizes.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info = self.root / "info.csv"
        if not self.root.is_dir():
            raise DataError(f"{self.root}: Groove MIDI Dataset root not found (download it and pass its folder)")
        if not info.is_file():
            raise DataError(f"{self.root}: no info.csv; not the Groove MIDI Dataset root (the folder with info.csv)")
        with open(info, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _INFO_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{info}: missing columns {', '.join(missing)}")
            rows = list(reader)
        self.performances: list[Performance] = []
        for i, r in enumerate(rows):
            if r["split"] not in SPLITS:
                raise DataError(f"{info}: row {i + 2}: split {r['split']!r} is not one of {', '.join(SPLITS)}")
            try:
                p = Performance(r["id"], r["drummer"], r["style"], int(r["bpm"]), r["beat_type"],
                                r["time_signature"], r["midi_filename"], float(r["duration"]), r["split"])  # fmt: skip
            except ValueError as e:
                raise DataError(f"{info}: row {i + 2}: bad number ({e})") from None
            self.performances.append(p)
        self._events: dict[str, Events] = {}
        self._cache_loaded = False

    def split(self, split: str) -> list[Performance]:
        """Performances of one split (``train``, ``validation`` or ``test``), in ``info.csv`` order."""
        if split not in SPLITS:
            raise DataError(f"unknown GMD split {split!r}; expected one of {', '.join(SPLITS)}")
        return [p for p in self.performances if p.split == split]

    def midi_path(self, p: Performance) -> Path:
        return self.root / p.midi_filename

    def _signature(self, p: Performance) -> int:
        return self.midi_path(p).stat().st_size

    def _load_cache(self) -> None:
        self._cache_loaded = True
        path = self.root / EVENTS_CACHE
        if not path.is_file():
            return
        with np.load(path) as d:
            names, sizes, offsets = d["names"], d["sizes"], d["offsets"]
            time, cls, vel, note = d["time"], d["cls"], d["velocity"], d["note"]
        for k, name in enumerate(names.tolist()):
            mp = self.root / name
            if mp.is_file() and mp.stat().st_size == int(sizes[k]):
                a, b = int(offsets[k]), int(offsets[k + 1])
                self._events[name] = Events(time[a:b], cls[a:b], vel[a:b], note[a:b])

    def events(self, p: Performance) -> Events:
        """The performance's events (parsed once, then kept)."""
        if not self._cache_loaded:
            self._load_cache()
        ev = self._events.get(p.midi_filename)
        if ev is None:
            ev = read_events(self.midi_path(p))
            self._events[p.midi_filename] = ev
        return ev

    def write_events_cache(self, performances: list[Performance]) -> Path:
        """Save the events of ``performances`` to ``root/events.npz`` (what data packs ship)."""
        evs = [self.events(p) for p in performances]
        offsets = np.cumsum([0] + [len(e) for e in evs])
        path = self.root / EVENTS_CACHE
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                names=np.array([p.midi_filename for p in performances]),
                sizes=np.array([self._signature(p) for p in performances], dtype=np.int64),
                offsets=offsets.astype(np.int64),
                time=np.concatenate([e.time for e in evs]) if evs else np.zeros(0),
                cls=np.concatenate([e.cls for e in evs]) if evs else np.zeros(0, np.int64),
                velocity=np.concatenate([e.velocity for e in evs]) if evs else np.zeros(0, np.int64),
                note=np.concatenate([e.note for e in evs]) if evs else np.zeros(0, np.int64),
            )
        return path

    def fingerprint(self, split: str) -> str:
        """Short hash of a split's file list (to tag what a model was trained on)."""
        h = hashlib.sha256("\n".join(p.midi_filename for p in self.split(split)).encode())
        return h.hexdigest()[:12]
