"""Deterministic drum renderer: events + kit -> mixture, optional stems, onset/velocity targets.

Each hit adds its velocity layer's sample, scaled by ``gain * (velocity / 127) ** gamma``, at its
exact sample position into its class's stem; open hi-hats are choked (10 ms fade) by the next
hi-hat hit. Same inputs and seed give bit-identical outputs; the mixture does not depend on
whether stems are asked for. The random choices are made by :func:`idm.data.plan.plan_render`;
this module plays a plan with numpy (:class:`idm.data.batch_render.BatchRenderer` plays batches of
plans on the GPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from idm.classes import CLASSES
from idm.data.gmd import Events
from idm.data.kits import SAMPLE_RATE, Kit
from idm.data.plan import CHOKE_FADE_S, PROCEDURAL, RenderAugment, RenderPlan, plan_render
from idm.data.targets import HOP

__all__ = ["CHOKE_FADE_S", "RenderAugment", "RenderResult", "eq_room_response", "play_plan", "render"]


@dataclass(eq=False)
class RenderResult:
    """A rendered clip: mixture ``[N]``, stems ``[9, N]`` (if asked), targets ``[9, F]``, the hits played."""

    mixture: np.ndarray
    stems: np.ndarray | None
    onsets: np.ndarray
    velocity: np.ndarray
    events: Events  # the hits the kit played, times relative to the clip start (some may be < 0)


def _pitched(x: np.ndarray, semitones: float, n_max: int) -> np.ndarray:
    """``x`` played ``semitones`` higher, only the first ``n_max`` output samples."""
    import soxr

    ratio = 2.0 ** (semitones / 12.0)
    head = x[: min(x.size, int(np.ceil(n_max * ratio)) + 64)]
    return soxr.resample(head, SAMPLE_RATE * ratio, SAMPLE_RATE, quality="HQ").astype(np.float32)[:n_max]


def eq_room_response(nfft: int, eq_db: np.ndarray | None, ir: np.ndarray | None) -> np.ndarray:
    """Frequency response (``nfft // 2 + 1`` rfft bins, complex128) of a plan's EQ and room."""
    freqs = np.fft.rfftfreq(nfft, 1.0 / SAMPLE_RATE)
    h = np.ones(freqs.size, dtype=np.complex128)
    if eq_db is not None:
        centres = np.geomspace(60.0, 12000.0, 8)
        db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(centres), eq_db)
        h *= 10.0 ** (db / 20.0)
    if ir is not None:
        h *= 1.0 + np.fft.rfft(ir, nfft)
    return h


def _apply(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    nfft = 2 * (h.size - 1)
    return np.fft.irfft(np.fft.rfft(x, nfft, axis=-1) * h, nfft, axis=-1)[..., : x.shape[-1]].astype(np.float32)


def play_plan(plan: RenderPlan, stems: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Play a plan with numpy: mixture ``[N]`` and, if asked, stems ``[9, N]`` (float32)."""
    n_samples = plan.n_samples
    fade_n = int(CHOKE_FADE_S * SAMPLE_RATE)
    fade = (np.cos(np.linspace(0.0, np.pi / 2, fade_n)) ** 2).astype(np.float32)
    out = np.zeros((len(CLASSES), n_samples), dtype=np.float32)
    pitched: dict[tuple[int, int], np.ndarray] = {}
    for i, layer in enumerate(plan.layers):
        if layer is None:
            raise ValueError(f"plan hit {i} is a procedural voice ({PROCEDURAL}): play it with BatchRenderer")
        c, s, cut = int(plan.cls[i]), int(plan.start[i]), int(plan.cut[i])
        x = layer.audio
        if plan.pitch[c] != 0.0:
            key = (id(layer.audio), c)
            if key not in pitched:  # hits come in time order: the first use needs the longest part
                pitched[key] = _pitched(x, float(plan.pitch[c]), n_samples - s)
            x = pitched[key]
        end = min(x.size, n_samples - s)
        if cut < end:
            end = min(end, cut + fade_n)
            x = x[:end].copy()
            tail = x[cut:]
            tail *= fade[: tail.size]
        start = max(0, -s)
        if start >= end:
            continue
        out[c, s + start : s + end] += plan.amp[i] * x[start:end]
    mixture = out.sum(axis=0, dtype=np.float32)
    if plan.eq_db is not None or plan.ir is not None:
        h = eq_room_response(plan.nfft, plan.eq_db, plan.ir)
        mixture = _apply(mixture, h)
        if stems:
            out = _apply(out, h)
    return mixture, (out if stems else None)


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
        Training augmentations, or None for a plain render. Pool and procedural draws need
        :class:`idm.data.batch_render.BatchRenderer`; here they must be off.
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
    plan = plan_render(events, kit, n_samples, seed, augment, mix_kits=mix_kits, hop=hop)
    mixture, out = play_plan(plan, stems)
    return RenderResult(mixture, out, plan.onsets, plan.velocity, plan.events)
