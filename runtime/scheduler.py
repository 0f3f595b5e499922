"""MIDI scheduler thread: each note leaves at its output sample's time on the audio clock, a note-off follows.

Events carry their output sample index (input onset + latency). A clock maps that index to a time
(the audio stream's clock, anchored by the callback; or the monotonic clock for paced files), so notes
leave with a constant latency whatever block they were found in. Without a clock (a file processed as
fast as possible) notes are sent at once.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Clock", "MidiScheduler", "MonotonicClock", "SchedulerStats"]

NOTE_ON = 0x90
NOTE_OFF = 0x80
DRUM_CHANNEL = 9  # channel 10


class Clock(Protocol):
    """Time source of the scheduler (seconds)."""

    def now(self) -> float: ...

    def time_of(self, sample: int) -> float | None:
        """When output sample ``sample`` (processor rate) is due; None while unknown."""
        ...


class MonotonicClock:
    """Output sample ``s`` is due ``s / sample_rate`` seconds after :meth:`start` (paced file input)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = int(sample_rate)
        self.t0: float | None = None

    def start(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0

    def now(self) -> float:
        return time.monotonic()

    def time_of(self, sample: int) -> float | None:
        return None if self.t0 is None else self.t0 + sample / self.sample_rate


class _Sender(Protocol):
    def send(self, message: list[int] | tuple[int, ...]) -> None: ...


class _Event(Protocol):
    cls: int
    note: int
    velocity: int
    sample: int


@dataclass
class SchedulerStats:
    """Counters read by the status panel (written by the scheduler thread only)."""

    sent: int = 0  #: note-ons sent
    late: int = 0  #: note-ons sent more than ``late_after`` seconds after their due time
    max_late_ms: float = 0.0
    dropped: int = 0  #: note-ons not sent because the session stopped before they were due


class MidiScheduler:
    """A thread that sends note-ons at their due time and note-offs ``note_seconds`` later.

    A note still sounding when the next hit of the same note is due is ended first (note-off, then
    note-on), so notes of one drum never overlap on the port.

    Parameters
    ----------
    port
        Where messages go (:class:`idm.runtime.midi_out.MidiPort`, or anything with ``send``).
    clock
        Maps output samples to times; None sends every note as soon as it is pushed.
    delay_samples
        Constant extra delay added to every event (scheduling margin), in output samples.
    note_seconds
        Length of the notes (note-off after the note-on).
    channel
        Zero-based MIDI channel (9 = General MIDI drums).
    notes
        MIDI note of each class index (default: the events' own notes).
    """

    def __init__(
        self,
        port: _Sender,
        clock: Clock | None,
        delay_samples: int = 0,
        note_seconds: float = 0.05,
        channel: int = DRUM_CHANNEL,
        late_after: float = 0.002,
        notes: list[int] | tuple[int, ...] | None = None,
    ) -> None:
        self.port = port
        self.clock = clock
        self.delay_samples = int(delay_samples)
        self.note_seconds = float(note_seconds)
        self.channel = int(channel)
        self.late_after = late_after
        self.notes = tuple(notes) if notes is not None else None
        self.stats = SchedulerStats()
        self._sounding: dict[int, int] = {}  # note -> order of its queued note-off
        self._cancelled: set[int] = set()  # orders of note-offs already sent early
        self._inbox: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
        self._heap: list[tuple[float, int, int, int, int]] = []  # (due, order, status, note, velocity)
        self._order = 0
        self._thread = threading.Thread(target=self._run, name="idm-midi-scheduler", daemon=True)
        self._stop = threading.Event()
        self._drain = False
        self._pending: list[tuple[int, int, int]] = []  # events waiting for the clock's first anchor

    def start(self) -> MidiScheduler:
        self._thread.start()
        return self

    def push(self, events: Iterable[_Event]) -> None:
        """Queue note events (from the worker thread); never blocks."""
        for e in events:
            note = int(e.note) if self.notes is None else self.notes[int(e.cls)]
            self._inbox.put((int(e.sample), note, int(e.velocity)))

    def _due(self, sample: int) -> float | None:
        if self.clock is None:
            return 0.0
        return self.clock.time_of(sample + self.delay_samples)

    def _add(self, sample: int, note: int, velocity: int) -> None:
        due = self._due(sample)
        if due is None:
            self._pending.append((sample, note, velocity))
            return
        self._order += 1
        heapq.heappush(self._heap, (due, self._order, NOTE_ON | self.channel, note, velocity))

    def _now(self) -> float:
        return 0.0 if self.clock is None else self.clock.now()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._finish()

    def _loop(self) -> None:
        while True:
            if self._pending and self._due(self._pending[0][0]) is not None:
                pend, self._pending = self._pending, []
                for ev in pend:
                    self._add(*ev)
            now = self._now()
            while self._heap and self._heap[0][0] <= now:
                due, order, status, note, vel = heapq.heappop(self._heap)
                if order in self._cancelled:
                    self._cancelled.discard(order)
                    continue
                if status & 0xF0 == NOTE_ON and note in self._sounding:  # end the sounding one first
                    self.port.send((NOTE_OFF | self.channel, note, 0))
                    self._cancelled.add(self._sounding.pop(note))
                elif status & 0xF0 == NOTE_OFF and self._sounding.get(note) == order:
                    del self._sounding[note]
                self.port.send((status, note, vel))
                if status & 0xF0 == NOTE_ON:
                    self.stats.sent += 1
                    late = now - due
                    if self.clock is not None and late > self.late_after:
                        self.stats.late += 1
                        self.stats.max_late_ms = max(self.stats.max_late_ms, late * 1000)
                    off = (due if self.clock is None else max(due, now)) + self.note_seconds
                    if self.clock is None:
                        off = 0.0
                    self._order += 1
                    heapq.heappush(self._heap, (off, self._order, NOTE_OFF | self.channel, note, 0))
                    self._sounding[note] = self._order
                now = self._now()
            idle = not self._heap and not self._pending
            if self._stop.is_set() and self._inbox.empty() and (not self._drain or idle):
                break
            timeout = 0.005
            if self._heap:
                timeout = min(timeout, max(0.0, self._heap[0][0] - now))
            try:
                item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
            except queue.Empty:
                continue
            while item is not None:
                self._add(*item)
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    item = None

    def _finish(self) -> None:
        """Stopped: drop note-ons that were not due yet, send every outstanding note-off now."""
        for _, order, status, note, _ in sorted(self._heap):
            if order in self._cancelled:
                continue
            if status & 0xF0 == NOTE_OFF:
                self.port.send((status, note, 0))
            else:
                self.stats.dropped += 1
        self.stats.dropped += len(self._pending)
        self._heap.clear()
        self._pending.clear()
        self._sounding.clear()
        self._cancelled.clear()

    def stop(self, drain: bool = False, timeout: float | None = None) -> None:
        """Stop the thread. ``drain``: first send everything queued at its due time (end of input)."""
        self._drain = drain
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return len(self._heap) + len(self._pending)
