"""Offline peak picking of onset probabilities (librosa semantics, vectorised over classes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["PeakPicking", "peak_pick"]


@dataclass(frozen=True)
class PeakPicking:
    """Parameters in frames: ``x[n]`` is a peak if it is the maximum of ``x[n-pre_max : n+post_max]``,
    at least ``mean(x[n-pre_avg : n+post_avg]) + delta``, and more than ``wait`` frames after the
    previous peak (windows are truncated at the edges). ``delta`` is one threshold, or one per class
    (a tuple as long as the class axis, e.g. thresholds tuned per class)."""

    pre_max: int = 8
    post_max: int = 8
    pre_avg: int = 17
    post_avg: int = 17
    delta: float | tuple[float, ...] = 0.2
    wait: int = 10


def _window_stat(x: np.ndarray, pre: int, post: int, how: str) -> np.ndarray:
    """Max or mean of ``x[..., n-pre : n+post]`` for every ``n``, windows truncated at the edges."""
    t = x.shape[-1]
    fill = -np.inf if how == "max" else 0.0
    padded = np.concatenate(
        [np.full((*x.shape[:-1], pre), fill), x.astype(np.float64), np.full((*x.shape[:-1], post), fill)], axis=-1
    )
    win = sliding_window_view(padded, pre + post, axis=-1)[..., :t, :]
    if how == "max":
        return win.max(axis=-1)
    counts = np.minimum(np.arange(t) + post, t) - np.maximum(np.arange(t) - pre, 0)
    return win.sum(axis=-1) / counts


def peak_pick(probs: np.ndarray, params: PeakPicking | None = None) -> np.ndarray:
    """``[K, T]`` onset probabilities -> ``[K, T]`` boolean peaks."""
    p = params or PeakPicking()
    x = np.asarray(probs)
    squeeze = x.ndim == 1
    x = np.atleast_2d(x)
    xf = x.astype(np.float64)
    delta = np.asarray(p.delta, dtype=np.float64)
    if delta.ndim:
        if delta.shape != (x.shape[0],):
            raise ValueError(f"peak picking: {delta.size} per-class deltas for {x.shape[0]} classes")
        delta = delta[:, None]
    cand = (xf == _window_stat(xf, p.pre_max, p.post_max, "max")) & (
        xf >= _window_stat(xf, p.pre_avg, p.post_avg, "mean") + delta
    )
    out = np.zeros(x.shape, dtype=bool)
    for k, n in zip(*np.nonzero(cand), strict=True):  # few candidates: greedy refractory suppression
        last = np.flatnonzero(out[k, max(0, n - p.wait) : n])
        if last.size == 0:
            out[k, n] = True
    return out[0] if squeeze else out
