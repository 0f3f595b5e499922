"""Render plans: every random choice of a rendered clip (hits, layers, gains, pitch, EQ, room), but no audio.

A plan is what :func:`idm.data.render.render` plays with numpy and what :class:`idm.data.batch_render.BatchRenderer`
plays on the GPU for a whole batch. The draws follow ``render``'s original order exactly, so a plan of a
seed describes the very clip ``render`` gives for that seed (pool and procedural choices, which older
configs do not make, draw from a second stream seeded from the same seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from idm.classes import CLASSES
from idm.data.gmd import Events
from idm.data.kits import SAMPLE_RATE, Instrument, Kit, Layer
from idm.data.targets import HOP, onset_targets

__all__ = [
    "CHOKE_FADE_S",
    "NO_CUT",
    "PITCH_STEPS",
    "PROCEDURAL",
    "LayerTable",
    "RenderAugment",
    "RenderPlan",
    "fast_len",
    "plan_render",
]

_CLOSED, _OPEN = CLASSES.index("hihat_closed"), CLASSES.index("hihat_open")
#: Fade-out of a choked open hi-hat, seconds.
CHOKE_FADE_S = 0.010
#: Pitch shifts are drawn on a grid of this many steps per semitone (12.5 cents: finer than any drum tuning).
PITCH_STEPS = 8
#: Layer id of a hit played by a procedurally synthesized voice (one fresh voice per example and class).
PROCEDURAL = -1
#: Choke position of a hit that is not choked.
NO_CUT = np.iinfo(np.int64).max


@dataclass(frozen=True)
class RenderAugment:
    """Random variations for training; each is off at 0 (probabilities) or a zero range.

    Parameters
    ----------
    gain_db
        Per-class gain, uniform in ``±gain_db``.
    pitch_semitones, pitch_prob
        Per class, with probability ``pitch_prob``, shift its samples by uniform ``±pitch_semitones``
        (on a grid of 1/8 semitone).
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
    pool_kit_prob
        Probability that an example's kit is assembled class by class from the one-shot pools (every
        instrument of that class in the training kits and the pools, plus procedural voices).
    pool_class_prob
        Otherwise, probability that one class of the example's kit is replaced by a draw from its pool.
    procedural_prob
        Probability that a draw from a class pool is a procedurally synthesized voice instead of a sample.
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
    pool_kit_prob: float = 0.0
    pool_class_prob: float = 0.0
    procedural_prob: float = 0.0

    @property
    def uses_pools(self) -> bool:
        return self.pool_kit_prob > 0 or self.pool_class_prob > 0


def fast_len(n: int) -> int:
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


class LayerTable:
    """Global ids of every velocity layer of some kits (and pools), in a fixed order; id -> Layer and back."""

    def __init__(self, kits: Sequence[Kit]) -> None:
        self.layers: list[Layer] = []
        self._ids: dict[int, int] = {}
        for kit in kits:
            for cls in CLASSES:
                for ins in kit.instruments.get(cls, ()):
                    for la in ins.layers:
                        if id(la) not in self._ids:
                            self._ids[id(la)] = len(self.layers)
                            self.layers.append(la)

    def __len__(self) -> int:
        return len(self.layers)

    def id_of(self, layer: Layer) -> int:
        """The global id of ``layer`` (KeyError if it is not in the table's kits)."""
        return self._ids[id(layer)]


@dataclass(eq=False)
class RenderPlan:
    """Every choice of one clip; hits in event order (``layer`` holds Layer objects, or None for procedural).

    ``amp`` already includes the class gain, the layer gain, the velocity curve and the overall level;
    ``cut`` is the choke position (samples from the hit, :data:`NO_CUT` if none); ``pitch`` is per class, in
    semitones; ``eq_db`` (8 band gains) and ``ir`` (room impulse response) are None when not drawn;
    ``nfft`` is the FFT size of the EQ/room filter.
    """

    n_samples: int
    cls: np.ndarray  # int64 [H]
    start: np.ndarray  # int64 [H]
    layers: list[Layer | None]
    amp: np.ndarray  # float32 [H]
    cut: np.ndarray  # int64 [H]
    pitch: np.ndarray  # float64 [9]
    eq_db: np.ndarray | None
    ir: np.ndarray | None
    nfft: int
    onsets: np.ndarray  # float32 [9, F]
    velocity: np.ndarray  # float32 [9, F]
    events: Events  # the hits played (times from the clip start; some may be < 0)
    sources: np.ndarray  # int64 [9]: which kit (index into the kits given) plays each class; -1 pool, -2 absent
    seed: int

    def layer_ids(self, table: LayerTable) -> np.ndarray:
        """Global layer ids of the hits (:data:`PROCEDURAL` for procedural voices)."""
        return np.array([PROCEDURAL if la is None else table.id_of(la) for la in self.layers], dtype=np.int64)


def _choose_layer(layers: tuple[Layer, ...], v: float, rng: np.random.Generator) -> Layer:
    """A layer whose range holds ``v`` (random among overlapping ones), else the nearest."""
    inside = [la for la in layers if la.vel_lo <= v <= la.vel_hi]
    if len(inside) == 1:
        return inside[0]
    if inside:
        return inside[int(rng.integers(len(inside)))]
    return min(layers, key=lambda la: max(la.vel_lo - v, v - la.vel_hi))


def _pool_draw(
    name: str, pools: Sequence[Kit], mix_kits: Sequence[Kit], aug: RenderAugment, rng: np.random.Generator
) -> Instrument | None:
    """A random instrument of class ``name`` from every kit and pool (None = a procedural voice)."""
    if rng.random() < aug.procedural_prob:
        return None
    choices = [i for k in (*mix_kits, *pools) for i in k.main(name)]
    return choices[int(rng.integers(len(choices)))] if choices else None


def plan_render(
    events: Events,
    kit: Kit,
    n_samples: int,
    seed: int,
    augment: RenderAugment | None = None,
    *,
    mix_kits: Sequence[Kit] = (),
    pools: Sequence[Kit] = (),
    hop: int = HOP,
) -> RenderPlan:
    """The plan of :func:`idm.data.render.render` for these arguments (see there); ``pools`` feed the pool draws.

    ``sources[c]`` is the index in ``mix_kits`` of the kit playing class ``c`` (the example's own kit when
    it is not in ``mix_kits``: -3), -1 for a pool or procedural draw, -2 when the class is absent.
    """
    rng = np.random.default_rng(seed)
    n_cls = len(CLASSES)
    aug = augment
    pooled = aug is not None and aug.uses_pools
    rng2 = np.random.default_rng([seed, 1]) if pooled else None
    whole_pool = pooled and rng2 is not None and aug is not None and rng2.random() < aug.pool_kit_prob
    # With a whole-pool kit every class the pools (or procedural synthesis) can play is present.
    have = np.array([kit.has(c) or (whole_pool and aug is not None and _can_pool(c, pools, mix_kits, aug))
                     for c in CLASSES])  # fmt: skip
    events = events.select(have[events.cls]) if len(events) else events

    mains: list[Instrument | None] = [None] * n_cls
    alts: list[dict[int, Instrument]] = [{} for _ in range(n_cls)]
    sources = np.full(n_cls, -2, dtype=np.int64)
    procedural = np.zeros(n_cls, dtype=bool)
    mixing = aug is not None and bool(mix_kits) and rng.random() < aug.mix_kits_prob
    kit_pos = next((i for i, k in enumerate(mix_kits) if k is kit), -3)
    for c, name in enumerate(CLASSES):
        if not have[c]:
            continue
        if whole_pool and aug is not None and rng2 is not None:
            ins = _pool_draw(name, pools, mix_kits, aug, rng2)
            sources[c] = -1
            mains[c], procedural[c] = ins, ins is None
            continue
        src, src_pos = kit, kit_pos
        if mixing and aug is not None and rng.random() < aug.mix_class_prob:
            donors = [(j, k) for j, k in enumerate(mix_kits) if k.has(name)]
            if donors:
                src_pos, src = donors[int(rng.integers(len(donors)))]
        m = src.main(name)
        mains[c] = m[int(rng.integers(len(m)))] if aug is not None else m[0]
        sources[c] = src_pos
        if pooled and aug is not None and rng2 is not None and rng2.random() < aug.pool_class_prob:
            ins = _pool_draw(name, pools, mix_kits, aug, rng2)
            sources[c] = -1
            mains[c], procedural[c] = ins, ins is None
            continue
        for ins in src.instruments[name]:
            for note in ins.notes:
                alts[c].setdefault(note, ins)

    if aug is not None:
        gains = 10.0 ** (rng.uniform(-aug.gain_db, aug.gain_db, n_cls) / 20.0)
        pitch = np.where(rng.random(n_cls) < aug.pitch_prob,
                         rng.uniform(-aug.pitch_semitones, aug.pitch_semitones, n_cls), 0.0)  # fmt: skip
        pitch = np.round(pitch * PITCH_STEPS) / PITCH_STEPS
        lo, hi = aug.velocity_gamma
        gamma = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        level = 10.0 ** (rng.uniform(-aug.level_db, aug.level_db) / 20.0)
    else:
        gains, pitch, gamma, level = np.ones(n_cls), np.zeros(n_cls), 1.0, 1.0
    pitch = np.where(procedural, 0.0, pitch)  # procedural voices are random enough

    pos = np.floor(events.time * SAMPLE_RATE + 0.5).astype(np.int64)
    # Choke: an open hat stops (with a short fade) at the next hi-hat hit after it.
    cut = np.full(pos.size, NO_CUT, dtype=np.int64)
    hats = np.flatnonzero((events.cls == _CLOSED) | (events.cls == _OPEN))
    nxt = np.searchsorted(pos[hats], pos[hats], side="right")  # first hat strictly later
    opens = (events.cls[hats] == _OPEN) & (nxt < hats.size)
    cut[hats[opens]] = pos[hats[nxt[opens]]] - pos[hats[opens]]

    layers: list[Layer | None] = []
    amp = np.zeros(pos.size, dtype=np.float32)
    keep = np.zeros(pos.size, dtype=bool)
    for i in range(pos.size):
        c, s, v, note = int(events.cls[i]), int(pos[i]), int(events.velocity[i]), int(events.note[i])
        if procedural[c]:
            layer, lgain = None, 1.0
        else:
            player = alts[c].get(note) or mains[c]
            if player is None:  # pragma: no cover -- classes the kit lacks were dropped above
                raise AssertionError(f"no instrument for class {CLASSES[c]}")
            layer = _choose_layer(player.layers, v / 127.0, rng)
            lgain = layer.gain
        if s >= n_samples:
            continue
        keep[i] = True
        layers.append(layer)
        amp[i] = np.float32(gains[c] * lgain * (v / 127.0) ** gamma * level)

    eq_db: np.ndarray | None = None
    ir: np.ndarray | None = None
    nfft = 0
    if aug is not None:
        use_eq = rng.random() < aug.eq_prob
        use_room = rng.random() < aug.room_prob
        eq_gains = rng.uniform(-aug.eq_db, aug.eq_db, 8)
        rt60 = rng.uniform(*aug.room_rt60)
        wet = rng.uniform(*aug.room_wet)
        room_seed = int(rng.integers(2**31))
        if use_eq or use_room:
            ir_len = int(rt60 * SAMPLE_RATE) if use_room else 0
            nfft = fast_len(n_samples + max(ir_len, 4096))  # the EQ's (short, zero-phase) response must not wrap
            if use_eq:
                eq_db = eq_gains
            if use_room:
                t = np.arange(ir_len) / SAMPLE_RATE
                r = np.random.default_rng(room_seed).standard_normal(ir_len) * np.exp(-6.9 * t / rt60)
                r[: SAMPLE_RATE // 200] = 0.0  # 5 ms pre-delay
                ir = r * (wet / np.sqrt(np.sum(r * r)))
    onsets, vel = onset_targets(pos, events.cls, events.velocity, n_samples, hop)
    return RenderPlan(
        n_samples, events.cls[keep].astype(np.int64), pos[keep], layers, amp[keep], cut[keep], pitch, eq_db, ir,
        nfft, onsets, vel, events, sources, int(seed),
    )  # fmt: skip


def _can_pool(name: str, pools: Sequence[Kit], mix_kits: Sequence[Kit], aug: RenderAugment) -> bool:
    """Whether a pool draw of class ``name`` can give something (a sample, or a procedural voice)."""
    return aug.procedural_prob > 0 or any(k.has(name) for k in (*mix_kits, *pools))
