"""Offline peak picking of onset probabilities (librosa semantics, vectorised over classes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from idm.classes import CLASSES

__all__ = ["PeakPicking", "local_mean", "peak_pick"]


@dataclass(frozen=True)
class PeakPicking:
    """Parameters in frames: ``x[n]`` is a peak if it is the maximum of ``x[n-pre_max : n+post_max]``,
    at least ``mean(x[n-pre_avg : n+post_avg]) + delta`` and at least ``threshold``, and more than ``wait``
    frames after the previous peak (windows are truncated at the edges). ``class_delta`` overrides ``delta``
    per class name; ``delta`` itself may also be one value per class (a tuple in project class order, as
    ``idm train`` tunes it). The defaults are the official evaluation's; ``post_max = post_avg = 1`` is causal."""

    pre_max: int = 8
    post_max: int = 8
    pre_avg: int = 17
    post_avg: int = 17
    delta: float | tuple[float, ...] = 0.2
    wait: int = 10
    threshold: float = 0.0
    class_delta: dict[str, float] = field(default_factory=dict)

    def deltas(self, classes: tuple[str, ...] | list[str]) -> np.ndarray:
        """Per-class ``delta`` for classes in the given order."""
        if isinstance(self.delta, tuple | list):
            if len(self.delta) != len(CLASSES):
                raise ValueError(f"peak picking: {len(self.delta)} per-class deltas for {len(CLASSES)} classes")
            base = dict(zip(CLASSES, (float(d) for d in self.delta), strict=True))
        else:
            base = dict.fromkeys(CLASSES, float(self.delta))
        return np.array([self.class_delta.get(c, base[c]) for c in classes], dtype=np.float64)

    @property
    def causal(self) -> bool:
        """Whether a decision needs no future frame."""
        return self.post_max == 1 and self.post_avg == 1


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


def local_mean(x: np.ndarray, pre: int, post: int) -> np.ndarray:
    """Mean of ``x[..., n-pre : n+post]`` for every ``n`` (windows truncated at the edges): the picker's baseline."""
    return _window_stat(np.asarray(x), pre, post, "mean")


def peak_pick(probs: np.ndarray, params: PeakPicking | None = None, classes: tuple[str, ...] = CLASSES) -> np.ndarray:
    """``[K, T]`` onset probabilities (rows in ``classes`` order) -> ``[K, T]`` boolean peaks."""
    p = params or PeakPicking()
    x = np.asarray(probs)
    squeeze = x.ndim == 1
    x = np.atleast_2d(x)
    xf = x.astype(np.float64)
    if x.shape[0] == len(classes):
        delta: np.ndarray | float = p.deltas(classes)[:, None]
    elif isinstance(p.delta, tuple | list):
        raise ValueError(f"peak picking: per-class deltas need {len(classes)} rows, got {x.shape[0]}")
    else:
        delta = float(p.delta)
    cand = (
        (xf == _window_stat(xf, p.pre_max, p.post_max, "max"))
        & (xf >= _window_stat(xf, p.pre_avg, p.post_avg, "mean") + delta)
        & (xf >= p.threshold)
    )
    out = np.zeros(x.shape, dtype=bool)
    for k, n in zip(*np.nonzero(cand), strict=True):  # few candidates: greedy refractory suppression
        last = np.flatnonzero(out[k, max(0, n - p.wait) : n])
        if last.size == 0:
            out[k, n] = True
    return out[0] if squeeze else out
