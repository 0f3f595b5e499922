"""Deterministic drum renderer: events + kit -> mixture, optional stems, onset/velocity targets.

Each hit adds its velocity layer's sample, scaled by ``gain * (velocity / 127) ** gamma``, at its
exact sample position into its class's stem; open hi-hats are choked (10 ms fade) by the next
hi-hat hit. Same inputs and seed give bit-identical outputs; the mixture does not depend on
whether stems are asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from idm.classes import CLASSES
from idm.data.gmd import Events
from idm.data.kits import SAMPLE_RATE, Instrument, Kit, Layer
from idm.data.targets import HOP, onset_targets

__all__ = ["RenderAugment", "RenderResult", "render"]

_CLOSED, _OPEN = CLASSES.index("hihat_closed"), CLASSES.index("hihat_open")
CHOKE_FADE_S = 0.010


@dataclass(frozen=True)
class RenderAugment:
    """Random variations for training; each is off at 0 (probabilities) or a zero range.

    Parameters
    ----------
    gain_db
        Per-class gain, uniform in ``±gain_db``.
    pitch_semitones, pitch_prob
        Per class, with probability ``pitch_prob``, shift its samples by uniform ``±pitch_semitones``.
    velocity_gamma
        Range of the velocity-curve exponent (log-uniform); 1 = linear as Hydrogen plays.
    mix_kits_prob, mix_class_prob
        With probability ``mix_kits_prob`` an example borrows each class, with probability
        ``mix_class_prob``, from another kit (of ``mix_kits``) that has it.
    eq_prob, eq_db
        Random smooth EQ (±``eq_db`` at 8 log-spaced bands) on the mix.
    room_prob, room_rt60, room_wet
        Synthetic room (exponentially decaying noise, RT60 range in s, wet gain range).
    level_db
        Overall level, uniform in ``±level_db``.
    """

    gain_db: float = 6.0
    pitch_semitones: float = 1.0
    pitch_prob: float = 0.3
    velocity_gamma: tuple[float, float] = (0.6, 1.6)
    mix_kits_prob: float = 0.2
    mix_class_prob: float = 0.3
    eq_prob: float = 0.5
    eq_db: float = 6.0
    room_prob: float = 0.3
    room_rt60: tuple[float, float] = (0.15, 0.8)
    room_wet: tuple[float, float] = (0.05, 0.3)
    level_db: float = 6.0


@dataclass(eq=False)
class RenderResult:
    """A rendered clip: mixture ``[N]``, stems ``[9, N]`` (if asked), targets ``[9, F]``, the hits played."""

    mixture: np.ndarray
    stems: np.ndarray | None
    onsets: np.ndarray
    velocity: np.ndarray
    events: Events  # the hits the kit played, times relative to the clip start (some may be < 0)


def _choose_layer(layers: tuple[Layer, ...], v: float, rng: np.random.Generator) -> Layer:
    """A layer whose range holds ``v`` (random among overlapping ones), else the nearest."""
    inside = [la for la in layers if la.vel_lo <= v <= la.vel_hi]
    if len(inside) == 1:
        return inside[0]
    if inside:
        return inside[int(rng.integers(len(inside)))]
    return min(layers, key=lambda la: max(la.vel_lo - v, v - la.vel_hi))


def _pitched(x: np.ndarray, semitones: float, n_max: int) -> np.ndarray:
    """``x`` played ``semitones`` higher, only the first ``n_max`` output samples."""
    import soxr

    ratio = 2.0 ** (semitones / 12.0)
    head = x[: min(x.size, int(np.ceil(n_max * ratio)) + 64)]
    return soxr.resample(head, SAMPLE_RATE * ratio, SAMPLE_RATE, quality="HQ").astype(np.float32)[:n_max]


def _room_eq(n: int, rng: np.random.Generator, aug: RenderAugment) -> np.ndarray | None:
    """Frequency response (rfft bins of size ``nfft``) of random EQ and room, or None if neither is drawn."""
    use_eq = rng.random() < aug.eq_prob
    use_room = rng.random() < aug.room_prob
    eq_gains = rng.uniform(-aug.eq_db, aug.eq_db, 8)
    rt60 = rng.uniform(*aug.room_rt60)
    wet = rng.uniform(*aug.room_wet)
    seed = int(rng.integers(2**31))
    if not (use_eq or use_room):
        return None
    ir_len = int(rt60 * SAMPLE_RATE) if use_room else 0
    nfft = _fast_len(n + max(ir_len, 4096))  # the EQ's (short, zero-phase) response must not wrap around
    freqs = np.fft.rfftfreq(nfft, 1.0 / SAMPLE_RATE)
    h = np.ones(freqs.size, dtype=np.complex128)
    if use_eq:
        centres = np.geomspace(60.0, 12000.0, 8)
        db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(centres), eq_gains)
        h *= 10.0 ** (db / 20.0)
    if use_room:
        t = np.arange(ir_len) / SAMPLE_RATE
        ir = np.random.default_rng(seed).standard_normal(ir_len) * np.exp(-6.9 * t / rt60)
        ir[: SAMPLE_RATE // 200] = 0.0  # 5 ms pre-delay
        ir *= wet / np.sqrt(np.sum(ir * ir))
        h *= 1.0 + np.fft.rfft(ir, nfft)
    return h


def _fast_len(n: int) -> int:
    """Smallest even 2^a 3^b 5^c >= n (fast FFT sizes)."""
    best = 1 << int(np.ceil(np.log2(n)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            if m % 2 == 0:
                best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _apply(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    nfft = 2 * (h.size - 1)
    return np.fft.irfft(np.fft.rfft(x, nfft, axis=-1) * h, nfft, axis=-1)[..., : x.shape[-1]].astype(np.float32)


def render(
    events: Events,
    kit: Kit,
    n_samples: int,
    seed: int,
    augment: RenderAugment | None = None,
    stems: bool = False,
    *,
    mix_kits: Sequence[Kit] = (),
    hop: int = HOP,
) -> RenderResult:
    """Render ``events`` (times in seconds from the clip start; earlier hits ring into the clip) with ``kit``.

    Parameters
    ----------
    events
        Hits; those of classes the kit lacks are dropped (from audio and targets).
    kit
        The kit; with ``augment``, one of a class's main instruments is drawn per clip, else the first.
    n_samples
        Clip length at 44.1 kHz.
    seed
        Seed of every random choice (velocity layers among overlapping ones, augmentations).
    augment
        Training augmentations, or None for a plain render.
    stems
        Also return the ``[9, N]`` stems (they add up to the mixture).
    mix_kits
        Kits to borrow instruments from when ``augment.mix_kits_prob`` draws a kit mix.
    hop
        Frame hop of the targets.

    Returns
    -------
    RenderResult
        mixture float32 ``[N]``, stems float32 ``[9, N]`` or None, onsets and velocity float32 ``[9, F]``
        with ``F = ceil(N / hop) + 1``, and the events played.
    """
    rng = np.random.default_rng(seed)
    n_cls = len(CLASSES)
    have = np.array([kit.has(c) for c in CLASSES])
    events = events.select(have[events.cls]) if len(events) else events

    # Per-class instrument sets: the main instrument and the articulations (GMD note -> instrument).
    mains: list[Instrument | None] = [None] * n_cls
    alts: list[dict[int, Instrument]] = [{} for _ in range(n_cls)]
    mixing = augment is not None and bool(mix_kits) and rng.random() < augment.mix_kits_prob
    for c, name in enumerate(CLASSES):
        if not have[c]:
            continue
        src = kit
        if mixing and augment is not None and rng.random() < augment.mix_class_prob:
            donors = [k for k in mix_kits if k.has(name)]
            if donors:
                src = donors[int(rng.integers(len(donors)))]
        m = src.main(name)
        mains[c] = m[int(rng.integers(len(m)))] if augment is not None else m[0]
        for ins in src.instruments[name]:
            for note in ins.notes:
                alts[c].setdefault(note, ins)

    if augment is not None:
        gains = 10.0 ** (rng.uniform(-augment.gain_db, augment.gain_db, n_cls) / 20.0)
        pitch = np.where(rng.random(n_cls) < augment.pitch_prob,
                         rng.uniform(-augment.pitch_semitones, augment.pitch_semitones, n_cls), 0.0)  # fmt: skip
        lo, hi = augment.velocity_gamma
        gamma = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        level = 10.0 ** (rng.uniform(-augment.level_db, augment.level_db) / 20.0)
    else:
        gains, pitch, gamma, level = np.ones(n_cls), np.zeros(n_cls), 1.0, 1.0

    pos = np.floor(events.time * SAMPLE_RATE + 0.5).astype(np.int64)
    # Choke: an open hat stops (with a short fade) at the next hi-hat hit after it.
    cut = np.full(pos.size, np.iinfo(np.int64).max, dtype=np.int64)
    hats = np.flatnonzero((events.cls == _CLOSED) | (events.cls == _OPEN))
    nxt = np.searchsorted(pos[hats], pos[hats], side="right")  # first hat strictly later
    opens = (events.cls[hats] == _OPEN) & (nxt < hats.size)
    cut[hats[opens]] = pos[hats[nxt[opens]]] - pos[hats[opens]]
    fade_n = int(CHOKE_FADE_S * SAMPLE_RATE)
    fade = (np.cos(np.linspace(0.0, np.pi / 2, fade_n)) ** 2).astype(np.float32)

    out = np.zeros((n_cls, n_samples), dtype=np.float32)
    pitched: dict[tuple[int, int], np.ndarray] = {}
    for i in range(pos.size):
        c, s, v, note = int(events.cls[i]), int(pos[i]), int(events.velocity[i]), int(events.note[i])
        player = alts[c].get(note) or mains[c]
        if player is None:  # pragma: no cover -- classes the kit lacks were dropped above
            raise AssertionError(f"no instrument for class {CLASSES[c]}")
        layer = _choose_layer(player.layers, v / 127.0, rng)
        if s >= n_samples:
            continue
        x = layer.audio
        if pitch[c] != 0.0:
            key = (id(layer.audio), c)
            if key not in pitched:  # events come in time order: the first use needs the longest part
                pitched[key] = _pitched(x, float(pitch[c]), n_samples - s)
            x = pitched[key]
        end = min(x.size, n_samples - s)
        if cut[i] < end:
            end = min(end, int(cut[i]) + fade_n)
            x = x[:end].copy()
            tail = x[int(cut[i]) :]
            tail *= fade[: tail.size]
        start = max(0, -s)
        if start >= end:
            continue
        amp = np.float32(gains[c] * layer.gain * (v / 127.0) ** gamma * level)
        out[c, s + start : s + end] += amp * x[start:end]

    mixture = out.sum(axis=0, dtype=np.float32)
    if augment is not None:
        h = _room_eq(n_samples, rng, augment)
        if h is not None:
            mixture = _apply(mixture, h)
            if stems:
                out = _apply(out, h)
    onsets, vel = onset_targets(pos, events.cls, events.velocity, n_samples, hop)
    return RenderResult(mixture, out if stems else None, onsets, vel, events)
