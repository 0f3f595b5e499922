"""Scores of one system on one clip, per class and per group: stem metrics and onset F-measures (raw, JSON-ready)."""

from __future__ import annotations

from typing import Any

import numpy as np

from idm.classes import CLASSES, GROUPS
from idm.eval.groups import group_onsets, group_stems
from idm.eval.metrics import is_silent, lsd, onset_f, sdr, si_sdr
from idm.eval.sets import RenderedClip
from idm.eval.systems import Estimate

__all__ = ["STEM_KINDS", "WINDOWS", "score_clip"]

#: Onset tolerance windows (s) and their names in the results.
WINDOWS: dict[str, float] = {"f50": 0.05, "f20": 0.02}
#: The two kinds of stem estimates.
STEM_KINDS: tuple[str, ...] = ("masked", "synth")


def _stem_scores(ref: np.ndarray, est: np.ndarray | None, silent: bool) -> dict[str, float] | None:
    if est is None or silent:
        return None
    return {"sdr": sdr(ref, est), "si_sdr": si_sdr(ref, est), "lsd": lsd(ref, est)}


def _score(
    names: tuple[str, ...],
    mixture: np.ndarray,
    ref_stems: np.ndarray,
    ref_onsets: list[np.ndarray],
    est: dict[str, np.ndarray | None],
    est_onsets: list[np.ndarray],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        silent = is_silent(ref_stems[i], mixture)
        row: dict[str, Any] = {"silent": silent, "n_ref_onsets": int(ref_onsets[i].size)}
        for kind in STEM_KINDS:
            e = est[kind]
            row[kind] = _stem_scores(ref_stems[i], None if e is None else e[i], silent)
        for key, window in WINDOWS.items():
            s = onset_f(ref_onsets[i], est_onsets[i], window)
            row[key] = s.f
            row[f"p{key[1:]}"], row[f"r{key[1:]}"] = s.precision, s.recall
        row["n_est_onsets"] = int(np.asarray(est_onsets[i]).size)
        out[name] = row
    return out


def score_clip(clip: RenderedClip, est: Estimate) -> dict[str, Any]:
    """Per-class and per-group scores of ``est`` against the clip's true stems and onsets.

    Each row holds ``silent`` (no stem metric then), ``masked``/``synth`` = ``{sdr, si_sdr, lsd}`` or
    None (silent reference, or a system without that output), ``f50``/``f20`` (None when the reference
    has no onsets: excluded), precision ``p50``/``p20``, recall ``r50``/``r20`` and onset counts.
    """
    n = clip.mixture.shape[-1]
    for kind in STEM_KINDS:
        e = getattr(est, kind)
        if e is not None and e.shape != (len(CLASSES), n):
            raise ValueError(f"{kind} stems of shape {e.shape}, expected {(len(CLASSES), n)}")
    stems = {k: getattr(est, k) for k in STEM_KINDS}
    classes = _score(CLASSES, clip.mixture, clip.stems, clip.onsets, stems, est.onsets)
    groups = _score(
        GROUPS,
        clip.mixture,
        group_stems(clip.stems),
        group_onsets(clip.onsets),
        {k: None if v is None else group_stems(v) for k, v in stems.items()},
        group_onsets(est.onsets),
    )
    return {"classes": classes, "groups": groups}
