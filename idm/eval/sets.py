"""Evaluation sets: GMD validation clips (a list of MIDI file, offset, kit, seed) and their rendering.

The *seen* set plays each clip with one of the acoustic training kits (taking turns); the *unseen*
set plays every clip (the same MIDI windows and seeds) with every held-out kit (all registered
kits of role validation by default), so that each unseen kit has the same clips and a per-kit
table compares kits on equal material. The *pooled* set (asked for by name only) plays each clip
with a kit of its own, drawn class by class from the training kits and one-shot pools: with
``split="train"`` it is a validation set of the training sources alone, new kit combinations of
heard sounds, for choosing among models without touching the evaluation sets. Every clip names its
kit (``EvalClip.kit_name``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from idm.classes import CLASSES
from idm.data.evalset import EvalClip, eval_clips, render_eval_clip
from idm.data.kitmap import load_kitmap
from idm.data.kits import SAMPLE_RATE, Kit, load_folder, load_hydrogen, load_kit, load_sf2
from idm.data.pools import pooled_kits
from idm.errors import DataError
from idm.eval.groups import merge_onsets

__all__ = ["ALL_SETS", "SETS", "EvalSet", "RenderedClip", "build_sets", "load_kit_spec", "render_clip", "spread"]

#: The sets ``idm eval`` runs by default, and every set it knows.
SETS: tuple[str, ...] = ("seen", "unseen")
ALL_SETS: tuple[str, ...] = (*SETS, "pooled")


@dataclass
class EvalSet:
    """One evaluation set: its clips and the kits they name (``every_kit``: each kit plays every clip;
    ``drawn_from``: the kits a pooled set's kits were drawn from, empty for the others)."""

    name: str
    clips: list[EvalClip]
    kits: dict[str, Kit]
    every_kit: bool = False
    drawn_from: list[str] = field(default_factory=list)

    def clips_per_kit(self) -> dict[str, int]:
        """How many clips each kit plays."""
        out = dict.fromkeys(self.kits, 0)
        for c in self.clips:
            out[c.kit_name] += 1
        return out


@dataclass
class RenderedClip:
    """A rendered clip: mixture ``[N]``, true stems ``[9, N]``, true onset times per class (s, merged)."""

    clip: EvalClip
    mixture: np.ndarray
    stems: np.ndarray
    onsets: list[np.ndarray]
    sample_rate: int = SAMPLE_RATE


def load_kit_spec(spec: str, kits_root: str | Path | None = None) -> Kit:
    """A kit from a registered name (``kitmap.yaml``) or a path: Hydrogen kit folder, ``.sf2`` file, one-shot folder."""
    p = Path(spec)
    if p.is_dir():
        return load_hydrogen(p) if (p / "drumkit.xml").is_file() else load_folder(p)
    if p.is_file():
        if p.suffix.lower() != ".sf2":
            raise DataError(f"{p}: a kit file must be a SoundFont (.sf2); folders may be Hydrogen or one-shot kits")
        return load_sf2(p)
    return load_kit(spec, kits_root)


def default_kits(which: str) -> list[str]:
    """Registered kit names of a set: the acoustic training kits (seen; no pools), every held-out kit (unseen), or
    every kit and pool the shipped models train on (pooled: the training and augmentation kits and the pools)."""
    roles = {"seen": ("training",), "unseen": ("validation",), "pooled": ("training", "augmentation", "pool")}
    return load_kitmap().names(roles[which])


def spread(n_total: int, n: int | None) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (all of them when ``n`` is None or too large)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    if n < 1:
        raise DataError(f"--max-clips must be at least 1, got {n}")
    return sorted({int(i) for i in np.linspace(0, n_total - 1, n).round()})


def build_sets(
    gmd_root: str | Path,
    which: tuple[str, ...] = SETS,
    *,
    kits_root: str | Path | None = None,
    seen_kits: list[str] | None = None,
    unseen_kits: list[str] | None = None,
    pooled_from: list[str] | None = None,
    max_clips: int | None = None,
    per_file: int = 1,
    clip_seconds: float = 10.0,
    seed: int = 0,
    split: str = "validation",
) -> list[EvalSet]:
    """The requested sets over the same clips of ``split``.

    Seen kits take turns over the chosen clips; every unseen kit plays every chosen clip (kit by
    kit), so ``max_clips`` is per set for *seen* and per kit for *unseen*; every *pooled* clip has a kit
    of its own (:func:`idm.data.pools.pooled_kits`).

    Parameters
    ----------
    gmd_root
        The Groove MIDI Dataset root (``info.csv``).
    which
        Names from :data:`SETS`.
    kits_root
        Root of the registered kits (default ``/usr/share``) or a data pack.
    seen_kits, unseen_kits, pooled_from
        Kit names or paths (see :func:`load_kit_spec`); default: the registry's training / held-out kits, and
        for the pooled kits' draws the training and augmentation kits and the pools.
    max_clips
        Keep this many clips, spread evenly over the split's files (default all); per kit in *unseen*.
    per_file, clip_seconds, seed
        Clips per performance, their length, the seed of offsets and renders (see ``idm.data.eval_clips``).
    """
    for w in which:
        if w not in ALL_SETS:
            raise DataError(f"unknown evaluation set {w!r}; expected one of {', '.join(ALL_SETS)}")
    specs = {w: given or default_kits(w) for w, given in
             (("seen", seen_kits), ("unseen", unseen_kits), ("pooled", pooled_from))}  # fmt: skip
    base = eval_clips(gmd_root, split, kits=["-"], clip_seconds=clip_seconds, per_file=per_file, seed=seed)
    if not base:
        raise DataError(f"{gmd_root}: no {split} performance is at least {clip_seconds:g} s long")
    chosen = [base[i] for i in spread(len(base), max_clips)]
    out = []
    for w in which:
        if w == "pooled":
            sources = [load_kit_spec(spec, kits_root) for spec in specs[w]]
            drawn = pooled_kits(sources, len(chosen), seed)
            clips = [replace(c, kit_name=n) for c, n in zip(chosen, drawn, strict=True)]
            out.append(EvalSet(w, clips, drawn, drawn_from=[k.name for k in sources]))
            continue
        every = w == "unseen"
        kits: dict[str, Kit] = {}
        # Taking turns, more kits than clips are never played.
        for spec in specs[w] if every else specs[w][: len(chosen)]:
            kit = load_kit_spec(spec, kits_root)
            if kit.name in kits:
                raise DataError(f"kit {kit.name!r} is given twice for the {w} set")
            kits[kit.name] = kit
        names = list(kits)
        if every:
            clips = [replace(c, kit_name=n) for n in names for c in chosen]
        else:
            clips = [replace(c, kit_name=names[i % len(names)]) for i, c in enumerate(chosen)]
        out.append(EvalSet(w, clips, kits, every))
    return out


def render_clip(clip: EvalClip, kits: dict[str, Kit]) -> RenderedClip:
    """Render a clip with its kit; the reference onsets are the hits played, per class, merged (see ``MERGE_S``)."""
    mixture, stems, events = render_eval_clip(clip, kits[clip.kit_name])
    onsets = [merge_onsets(np.floor(events.time[events.cls == k] * SAMPLE_RATE + 0.5) / SAMPLE_RATE)
              for k in range(len(CLASSES))]  # fmt: skip
    return RenderedClip(clip, mixture, stems, onsets)
