"""The evaluation set as a spec, not audio: (MIDI file, offset, kit, seed) clips rendered without augmentation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from idm.data.gmd import Events, GrooveMidi, read_events
from idm.data.kitmap import load_kitmap
from idm.data.kits import SAMPLE_RATE, Kit
from idm.data.render import render
from idm.errors import DataError

__all__ = ["PREROLL_S", "EvalClip", "eval_clips", "render_eval_clip"]

#: Hits this long before a clip are rendered so that their tails ring into it.
PREROLL_S = 3.0


@dataclass(frozen=True)
class EvalClip:
    """One evaluation clip: ``duration_s`` of ``midi_path`` from ``offset_s``, played by ``kit_name``."""

    midi_path: str
    offset_s: float
    kit_name: str
    seed: int
    duration_s: float = 10.0


def eval_clips(
    gmd_root: str | Path,
    split: str = "validation",
    kits: list[str] | tuple[str, ...] | None = None,
    clip_seconds: float = 10.0,
    per_file: int = 1,
    seed: int = 0,
    every_kit: bool = False,
) -> list[EvalClip]:
    """Clips of every performance of ``split`` at least ``clip_seconds`` long, ``per_file`` each.

    Offsets are random (sample-aligned, never a clip without hits). Kits take turns in the given
    order (default: the registered validation kits), or with ``every_kit`` each kit plays every
    clip (kit by kit, the same MIDI windows and seeds), so that every kit has as many clips.
    """
    if clip_seconds <= 0 or per_file < 1:
        raise DataError(f"clip_seconds must be positive and per_file >= 1, got {clip_seconds}, {per_file}")
    names = list(kits) if kits is not None else load_kitmap().names(("validation",))
    if not names:
        raise DataError("no kits given for the evaluation clips")
    gmd = GrooveMidi(gmd_root)
    out: list[EvalClip] = []  # kit "-" for now
    for f, p in enumerate(gmd.split(split)):
        if p.duration < clip_seconds:
            continue
        ev = gmd.events(p)
        for j in range(per_file):
            rng = np.random.default_rng([seed, f, j])
            offset = 0.0
            for _ in range(20):
                offset = int(rng.uniform(0.0, p.duration - clip_seconds) * SAMPLE_RATE) / SAMPLE_RATE
                if len(ev.window(offset, offset + clip_seconds)):
                    break
            out.append(EvalClip(str(gmd.midi_path(p)), offset, "-", int(rng.integers(2**31)), clip_seconds))
    if every_kit:
        return [replace(c, kit_name=k) for k in names for c in out]
    return [replace(c, kit_name=names[i % len(names)]) for i, c in enumerate(out)]


def render_eval_clip(clip: EvalClip, kit: Kit) -> tuple[np.ndarray, np.ndarray, Events]:
    """Render a clip with its kit, no augmentation.

    Returns
    -------
    mixture : float32 ``[N]``
    stems : float32 ``[9, N]`` (project class order; they add up to the mixture)
    events : the hits in the clip that the kit plays (times from the clip start)
    """
    if kit.name != clip.kit_name:
        raise DataError(f"clip wants kit {clip.kit_name!r}, got {kit.name!r}")
    n = round(clip.duration_s * SAMPLE_RATE)
    window = read_events(clip.midi_path).window(clip.offset_s, clip.offset_s + clip.duration_s, pre=PREROLL_S)
    res = render(window, kit, n, clip.seed, augment=None, stems=True)
    assert res.stems is not None
    ev = res.events
    inside = (ev.time >= 0) & (np.floor(ev.time * SAMPLE_RATE + 0.5) < n)
    return res.mixture, res.stems, ev.select(inside)
