"""A built-in demo drum loop, synthesized from scratch (no sample files), deterministic under a seed."""

from __future__ import annotations

import numpy as np

__all__ = ["DEMO_PATTERN", "demo_loop_hits", "render_demo_loop"]

#: 16th-note steps of one bar: (class, steps, velocity 0-1).
DEMO_PATTERN: tuple[tuple[str, tuple[int, ...], float], ...] = (
    ("kick", (0, 6, 8, 11), 0.95),
    ("snare", (4, 12), 0.85),
    ("hihat_closed", (0, 2, 4, 6, 8, 10, 12), 0.55),
    ("hihat_open", (14,), 0.6),
    ("crash", (0,), 0.5),
)


def _voice(cls: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.6 * sr)) / sr
    noise = rng.standard_normal(t.size)
    if cls == "kick":
        phase = 2 * np.pi * (45 * t + (120 - 45) / 30 * (1 - np.exp(-30 * t)))
        return np.sin(phase) * np.exp(-7 * t)
    if cls == "snare":
        return 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-20 * t) + 0.6 * noise * np.exp(-14 * t)
    hp = np.diff(noise, prepend=0.0)  # bright noise for metal
    if cls == "hihat_closed":
        return 0.5 * hp * np.exp(-60 * t)
    if cls == "hihat_open":
        return 0.4 * hp * np.exp(-7 * t)
    return 0.35 * (hp + 0.3 * np.sin(2 * np.pi * 520 * t) * noise) * np.exp(-2.5 * t)


def demo_loop_hits(seconds: float = 8.0, sr: int = 44100, bpm: float = 100.0) -> list[tuple[int, str, float]]:
    """The synthesized loop's hits ``(start sample, class, velocity 0-1)`` in rendering order (its ground truth)."""
    n, step = int(seconds * sr), 60.0 / bpm / 4
    bar = 16 * step
    hits = []
    for b in range(int(np.ceil(seconds / bar))):
        for cls, steps, vel in DEMO_PATTERN:
            if cls == "crash" and b % 4:
                continue
            for s in steps:
                start = round((b * bar + s * step) * sr)
                if start < n:
                    hits.append((start, cls, vel))
    return hits


def render_demo_loop(seconds: float = 8.0, sr: int = 44100, seed: int = 0, bpm: float = 100.0) -> np.ndarray:
    """Mono float32 drum loop of ``seconds`` at ``sr``, peak-normalised to -3 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n + sr, dtype=np.float64)
    voices = {cls: _voice(cls, sr, rng) for cls, _, _ in DEMO_PATTERN}
    for start, cls, vel in demo_loop_hits(seconds, sr, bpm):
        v = voices[cls]
        gain = vel * (0.9 + 0.2 * rng.random())
        out[start : start + v.size] += gain * v[: out.size - start]
    out = out[:n]
    return (out / np.abs(out).max() * 10 ** (-3 / 20)).astype(np.float32)


#: The sampled-kit demo: 8 bars at 100 BPM in 16th-note steps, (bar range, class, steps, MIDI velocity).
KIT_DEMO_BARS: tuple[tuple[range, str, tuple[int, ...], int], ...] = (
    (range(0, 8), "kick", (0, 6, 8, 11), 112),
    (range(0, 8), "snare", (4, 12), 104),
    (range(0, 4), "hihat_closed", (0, 2, 4, 6, 8, 10, 12), 80),
    (range(0, 4), "hihat_open", (14,), 88),
    (range(4, 7), "ride", (0, 2, 4, 6, 8, 10, 12, 14), 84),
    (range(0, 8, 4), "crash", (0,), 110),
    (range(7, 8), "tom_high", (8, 9), 100),
    (range(7, 8), "tom_mid", (10, 11), 100),
    (range(7, 8), "tom_floor", (13, 14, 15), 108),
)
#: The kit of the sampled demo (a training kit from Debian's avldrums.lv2-soundfont).
DEMO_KIT = "AVL Black Pearl 4"


def demo_events(bars: int = 8, bpm: float = 100.0) -> list[tuple[float, str, int]]:
    """The sampled demo's hits ``(seconds, class, MIDI velocity)`` in time order: the ground truth of the demo."""
    step = 60.0 / bpm / 4
    hits = []
    for bar_range, cls, steps, vel in KIT_DEMO_BARS:
        for b in bar_range:
            if b < bars:
                hits += [((16 * b + s) * step, cls, vel) for s in steps]
    return sorted(hits)


def render_kit_demo(sr: int = 44100, kit_root: str | None = None) -> tuple[np.ndarray, list[tuple[float, str, int]]]:
    """The demo loop rendered with a real sampled kit (``DEMO_KIT``) at 44.1 kHz, and its ground-truth hits.

    Raises :class:`idm.errors.IDMError` when the kit is not installed (Debian: ``avldrums.lv2-soundfont``).
    """
    from idm.classes import CLASSES
    from idm.data.gmd import Events
    from idm.data.kits import load_kit
    from idm.data.render import render

    hits = demo_events()
    ev = Events(
        time=np.array([t for t, _, _ in hits]),
        cls=np.array([CLASSES.index(c) for _, c, _ in hits], dtype=np.int64),
        velocity=np.array([v for _, _, v in hits], dtype=np.int64),
        note=np.zeros(len(hits), dtype=np.int64),
    )
    n = int((hits[-1][0] + 1.5) * sr)
    mix = render(ev, load_kit(DEMO_KIT, kit_root), n, seed=0).mixture
    peak = float(np.abs(mix).max())
    mix = mix * (10 ** (-3 / 20) / peak) if peak > 0 else mix
    if sr != 44100:
        from idm.audio import resample

        mix = resample(mix, 44100, sr)
    return mix.astype(np.float32), hits
