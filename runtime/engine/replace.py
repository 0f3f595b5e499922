"""Drum replacement: the user's samples played at the detected hits, on the processor's output timeline.

A :class:`ReplacementKit` holds, per class, the velocity layers to play (loaded and resampled before the stream
starts); a :class:`Replacer` turns each block's :class:`~idm.runtime.engine.processor.NoteEvent` into voices that
start exactly at the event's output sample (the MIDI note's time), and mixes the result as its mode says:

- ``swap``: the named drums are swapped for the samples: the input, delayed, minus the named drums' masked stems,
  plus the samples (everything else in the recording stays as it was);
- ``add``: the samples on top of the whole original mix (reinforcement);
- ``solo``: the samples alone; drums not named are muted.

Everything is preallocated in :meth:`Replacer.prepare`; :meth:`Replacer.process` works in place. Voices are mixed
block by block (a sampler's voice list: each block adds the part of every sounding sample that falls in it), so a
long cymbal costs a little in each block it sounds in, never all at once in the block where it starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from idm.runtime.engine.delay import DelayLine

from idm.errors import ConfigError

if TYPE_CHECKING:
    from idm.runtime.engine.processor import NoteEvent

__all__ = ["REPLACE_MODES", "ReplacedBlock", "ReplacementKit", "Replacer", "SampleLayer", "SampleSequencer"]

#: What happens to the drums: swapped for the samples, samples added to the mix, or samples alone.
REPLACE_MODES = ("swap", "add", "solo")


@dataclass(frozen=True, eq=False)
class SampleLayer:
    """One velocity layer: ``audio`` (mono float32 at the processor's rate) for MIDI velocities ``vel_lo..vel_hi``
    (as 0-1, velocity / 127), scaled by ``gain``."""

    audio: np.ndarray
    vel_lo: float = 0.0
    vel_hi: float = 1.0
    gain: float = 1.0


class ReplacementKit:
    """Per class (project order) the layers to play; a class with none is not replaced.

    A hit of MIDI velocity ``v`` plays the first layer whose range holds ``v / 127`` (else the nearest), scaled by
    ``layer.gain * v / 127``: velocity layers when the kit has them, a linear gain curve in any case (the curve of
    the project's training renderer, so a clip re-rendered with its own kit gives back its mixture).

    Parameters
    ----------
    layers
        One sequence of :class:`SampleLayer` per class, project order.
    sample_rate
        The rate of every layer's audio (the processor's).
    name
        What the kit is called in messages.
    """

    def __init__(self, layers: Sequence[Sequence[SampleLayer]], sample_rate: int, name: str = "") -> None:
        self.layers = tuple(tuple(ls) for ls in layers)
        self.sample_rate = int(sample_rate)
        self.name = name
        for ls in self.layers:
            for la in ls:
                if la.audio.ndim != 1 or la.audio.dtype != np.float32 or la.audio.size == 0:
                    raise ConfigError("replacement samples must be non-empty mono float32 arrays")
        if not any(self.layers):
            raise ConfigError("a replacement kit needs samples for at least one class")
        self.named = np.array([bool(ls) for ls in self.layers])
        self.max_length = max(la.audio.shape[0] for ls in self.layers for la in ls)
        # per class and MIDI velocity (0-127): the layer's index, and its amplitude, looked up without a search
        self._pick = np.zeros((len(self.layers), 128), dtype=np.int64)
        self._amp = np.zeros((len(self.layers), 128), dtype=np.float32)
        for k, ls in enumerate(self.layers):
            for v in range(128):
                if ls:
                    i = self._choose(ls, v / 127.0)
                    self._pick[k, v] = i
                    self._amp[k, v] = np.float32(ls[i].gain * v / 127.0)

    @staticmethod
    def _choose(layers: tuple[SampleLayer, ...], v: float) -> int:
        for i, la in enumerate(layers):
            if la.vel_lo <= v <= la.vel_hi:
                return i
        return min(range(len(layers)), key=lambda i: max(layers[i].vel_lo - v, v - layers[i].vel_hi))

    @property
    def n_classes(self) -> int:
        return len(self.layers)

    @property
    def nbytes(self) -> int:
        """Memory of the loaded samples."""
        return sum(la.audio.nbytes for ls in self.layers for la in ls)

    def sample(self, cls: int, velocity: int) -> tuple[np.ndarray, float]:
        """The audio and amplitude a hit of class ``cls`` and MIDI ``velocity`` plays (the class must be named)."""
        v = min(127, max(0, int(velocity)))
        return self.layers[cls][int(self._pick[cls, v])].audio, float(self._amp[cls, v])


@dataclass(slots=True)
class _Voice:
    """A sounding sample: its class, audio, first output sample and amplitude."""

    cls: int
    audio: np.ndarray
    at: int
    amp: float


@dataclass
class ReplacedBlock:
    """One block of replacement output (views valid until the next call): the mix and each class's sample track."""

    start: int
    mix: np.ndarray  #: ``[n]`` the replaced mix, as the mode says
    tracks: np.ndarray  #: ``[K, n]`` the samples alone, per class (zero for classes not named)


class Replacer:
    """Plays a :class:`ReplacementKit` at a processor's events and mixes it with its stems or its input.

    Feed it every :class:`~idm.runtime.engine.processor.ProcessedBlock` in order, with the input block that
    produced it: ``process(blk.start, blk.events, blk.stems, x)``. The output is on the processor's output
    timeline (``latency`` samples after the input), so a sample starts at its MIDI note's time.

    Parameters
    ----------
    kit
        The samples.
    mode
        ``swap``, ``add`` or ``solo`` (module docstring).
    latency
        The processor's latency (the delay of the input in ``add`` mode).
    max_block
        Largest block.
    """

    def __init__(self, kit: ReplacementKit, mode: str, latency: int, max_block: int, max_voices: int = 256) -> None:
        if mode not in REPLACE_MODES:
            raise ConfigError(f"replace mode must be one of {', '.join(REPLACE_MODES)}, got {mode!r}")
        self.kit, self.mode, self.latency = kit, mode, int(latency)
        self.max_voices = int(max_voices)
        self._named = kit.named.astype(np.float32)  # the stems taken out of the mix in swap mode
        self.prepare(max_block)

    def prepare(self, max_block: int) -> None:
        """Allocate for blocks of up to ``max_block`` samples and start a new stream."""
        self.max_block = int(max_block)
        self._tracks = np.zeros((self.kit.n_classes, self.max_block), dtype=np.float32)
        self._tmp = np.zeros(self.max_block, dtype=np.float32)
        self._mix = np.zeros(self.max_block, dtype=np.float32)
        self._sum = np.zeros(self.max_block, dtype=np.float32)
        self._delay = DelayLine(self.latency, self.max_block) if self.mode != "solo" else None
        self._out = np.zeros(self.max_block, dtype=np.float32)
        self._amp = np.zeros((), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """A new stream: silence, output timeline back to sample 0."""
        self.position = 0  #: the next output sample
        # sounding voices, at most max_voices (the oldest is dropped)
        self._voices: list[_Voice] = []
        if self._delay is not None:
            self._delay.reset()

    @property
    def nbytes(self) -> int:
        """Memory held: the samples and the block buffers."""
        return self.kit.nbytes + sum(a.nbytes for a in (self._tracks, self._tmp, self._mix, self._sum, self._out))

    @property
    def voices(self) -> int:
        """Samples sounding now."""
        return len(self._voices)

    def _mix_voices(self, start: int, n: int) -> np.ndarray:
        """The sounding voices' samples ``[start, start + n)`` into the per-class tracks; ended voices leave."""
        tracks = self._tracks[:, :n]
        tracks.fill(0.0)
        tmp, amp = self._tmp, self._amp
        keep = 0
        for v in self._voices:
            shot = v.audio
            off = start - v.at
            p = max(0, -off)  # first sample of this block the voice sounds in
            if p < n:
                q = min(n, shot.shape[0] - off)
                if q > p:
                    amp[()] = v.amp
                    seg = tmp[: q - p]
                    np.multiply(shot[off + p : off + q], amp, out=seg)
                    row = tracks[v.cls, p:q]
                    np.add(row, seg, out=row)
            if shot.shape[0] - off > n:  # still sounding after this block
                self._voices[keep] = v
                keep += 1
        del self._voices[keep:]
        return tracks

    def process(
        self, start: int, events: Sequence[NoteEvent], stems: np.ndarray | None, x: np.ndarray
    ) -> ReplacedBlock:
        """One block: ``start`` (the block's first output sample), its events, its masked stems ``[K, n]`` (``swap``
        mode needs them) and the input samples ``x`` ``[n]`` that produced it (``swap`` and ``add`` delay them)."""
        n = x.shape[0] if stems is None else stems.shape[-1]
        if n > self.max_block:
            raise ValueError(f"block of {n} samples exceeds max_block {self.max_block}")
        if start != self.position:
            raise ValueError(f"block starts at {start}, the replacer is at {self.position}")
        named = self.kit.named
        for e in events:
            k = e.cls
            if not named[k]:
                continue
            shot, amp = self.kit.sample(k, e.velocity)
            at = int(e.sample)
            if at + shot.shape[0] <= start:  # due and over before this block (not a processor's event)
                continue
            if len(self._voices) >= self.max_voices:
                del self._voices[0]  # the oldest voice makes room
            self._voices.append(_Voice(k, shot, at, amp))
        tracks = self._mix_voices(start, n)
        self.position += n
        mix = self._mix[:n]
        if self._delay is not None:
            np.copyto(mix, self._delay.process(x[:n]))
        else:
            mix.fill(0.0)
        if self.mode == "swap":
            if stems is None:
                raise ValueError("swap mode needs the processor's masked stems")
            out = self._out[:n]
            np.matmul(self._named, stems, out=out)
            mix -= out
        total = self._sum[:n]
        np.add.reduce(tracks, axis=0, out=total)
        mix += total
        return ReplacedBlock(start, mix, tracks)


class SampleSequencer:
    """The kit's samples at whole-clip hits, any sample range on demand (stateless: blocks in any order, on threads).

    Equal, to float32 rounding of the same adds, to what :class:`Replacer` plays for the same hits.

    Parameters
    ----------
    kit
        The samples.
    classes, starts, velocities
        One entry per hit: class index, first sample, MIDI velocity (hits of classes not named are ignored).
    """

    def __init__(self, kit: ReplacementKit, classes: np.ndarray, starts: np.ndarray, velocities: np.ndarray) -> None:
        ks = np.asarray(classes, dtype=np.int64)
        keep = kit.named[ks] if ks.size else np.zeros(0, bool)
        ks = ks[keep]
        st = np.asarray(starts, dtype=np.int64)[keep]
        vs = np.asarray(velocities, dtype=np.int64)[keep]
        order = np.argsort(st, kind="stable")
        self.kit = kit
        self.classes, self.starts, self.velocities = ks[order], st[order], vs[order]
        self.n_classes = kit.n_classes

    def render(self, a: int, b: int) -> np.ndarray:
        """Sample tracks ``[K, b - a]`` for samples ``[a, b)``."""
        out = np.zeros((self.n_classes, max(0, b - a)), dtype=np.float32)
        lo = int(np.searchsorted(self.starts, a - self.kit.max_length, side="right"))
        hi = int(np.searchsorted(self.starts, b, side="left"))
        for i in range(lo, hi):  # one vector add per hit that sounds in the range
            k, s = int(self.classes[i]), int(self.starts[i])
            shot, amp = self.kit.sample(k, int(self.velocities[i]))
            p, q = max(s, a), min(s + shot.shape[0], b)
            if q > p:
                out[k, p - a : q - a] += np.float32(amp) * shot[p - s : q - s]
        return out
