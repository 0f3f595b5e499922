"""Online peak picking of onset probabilities: the offline (librosa-style) picker, frame by frame.

With ``post_max = post_avg = 1`` the picker is causal (no frame of delay); larger windows delay each decision
by ``max(post_max, post_avg) - 1`` frames and give exactly the offline picks of :func:`idm.peaks.peak_pick`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from idm.errors import ConfigError

__all__ = ["PickerParams", "StreamingPeakPicker"]


@dataclass
class PickerParams:
    """Windows in frames (see :class:`idm.peaks.PeakPicking`), per-class ``delta`` and an absolute ``threshold``.

    A frame ``n`` of class ``k`` is a peak if it is the maximum of ``x[n-pre_max : n+post_max]``, at least
    ``mean(x[n-pre_avg : n+post_avg]) + delta[k]`` and at least ``threshold[k]``, and more than ``wait``
    frames after the previous peak of that class.
    """

    pre_max: int
    post_max: int
    pre_avg: int
    post_avg: int
    delta: np.ndarray  # [K] float64
    threshold: np.ndarray  # [K] float64
    wait: int

    @property
    def delay(self) -> int:
        """Frames of look-ahead a decision needs (0 for a causal picker)."""
        return max(self.post_max, self.post_avg) - 1

    @classmethod
    def from_manifest(
        cls,
        section: dict[str, Any],
        class_names: list[str],
        delta: float | dict[str, float] | None = None,
        threshold: float | dict[str, float] | None = None,
        wait: int | None = None,
    ) -> PickerParams:
        """Parameters from a bundle's ``peak_picking`` section, with optional user overrides.

        ``delta`` and ``threshold`` are a number (all classes) or a mapping class name -> value (classes not in
        the mapping keep the manifest's value, which is ``delta`` overridden by ``class_delta``).
        """

        def apply(out: np.ndarray, value: float | dict[str, float] | None, name: str) -> None:
            if value is None:
                return
            if isinstance(value, dict):
                for cls_name, v in value.items():
                    if cls_name not in class_names:
                        raise ConfigError(f"peak picking {name}: unknown class {cls_name!r}")
                    out[class_names.index(cls_name)] = float(v)
            else:
                out[:] = float(value)

        k = len(class_names)
        base = section["delta"]
        if isinstance(base, list):  # one per class, in the manifest's class order
            if len(base) != k:
                raise ConfigError(f"peak picking delta: {len(base)} values for {k} classes")
            deltas = np.array(base, dtype=np.float64)
        else:
            deltas = np.full(k, float(base), dtype=np.float64)
        apply(deltas, section.get("class_delta") or None, "class_delta")
        apply(deltas, delta, "delta")
        thresholds = np.full(k, float(section.get("threshold", 0.0)), dtype=np.float64)
        apply(thresholds, threshold, "threshold")
        p = cls(
            pre_max=int(section["pre_max"]),
            post_max=int(section["post_max"]),
            pre_avg=int(section["pre_avg"]),
            post_avg=int(section["post_avg"]),
            delta=deltas,
            threshold=thresholds,
            wait=int(section["wait"]) if wait is None else int(wait),
        )
        if min(p.post_max, p.post_avg) < 1 or min(p.pre_max, p.pre_avg, p.wait) < 0:
            raise ConfigError("peak picking: post windows must be >= 1 frame, pre windows and wait >= 0")
        return p


class StreamingPeakPicker:
    """Feed onset probabilities ``[K, m]`` frame by frame; get back the peaks that became final.

    Decisions are identical to :func:`idm.peaks.peak_pick` on the whole clip (same float64 window
    statistics, windows truncated at both ends once :meth:`flush` gives the end).
    """

    def __init__(self, params: PickerParams, n_classes: int) -> None:
        self.p = params
        self.k = n_classes
        self._head = max(params.pre_max, params.pre_avg)  # frames kept before the frame being decided
        self._tail = max(params.post_max, params.post_avg)
        self._buf = np.zeros((n_classes, 1024), dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self._n = 0  # frames received
        self._next = 0  # next frame to decide
        self._base = -self._head  # absolute frame index of _buf[:, 0]; frames < 0 hold zeros
        self._len = self._head  # valid columns in _buf
        self._buf[:, : self._head] = 0.0
        self._last = np.full(self.k, -(1 << 40), dtype=np.int64)  # last accepted peak per class

    def _append(self, x: np.ndarray) -> None:
        m = x.shape[1]
        need = self._len + m
        if need > self._buf.shape[1]:
            keep = self._next - self._head - self._base  # columns no longer needed
            if keep > 0:
                self._buf[:, : self._len - keep] = self._buf[:, keep : self._len]
                self._len -= keep
                self._base += keep
                need -= keep
            if need > self._buf.shape[1]:
                new = np.zeros((self.k, max(need, 2 * self._buf.shape[1])), dtype=np.float64)
                new[:, : self._len] = self._buf[:, : self._len]
                self._buf = new
        self._buf[:, self._len : need] = x
        self._len = need

    def _decide(self, lo: int, hi: int, end: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Decide frames ``[lo, hi)``; ``end`` is the clip length once known (truncates the right windows)."""
        p = self.p
        if hi <= lo:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        t = hi - lo
        i0 = lo - self._base
        x = self._buf[:, i0 : i0 + t]
        need = hi + self._tail - 1 - self._base  # columns up to the last right window
        if need > self._len:  # end of clip: pad the right side (max with -inf, mean with zeros)
            self._append(np.zeros((self.k, need - self._len)))
            x = self._buf[:, i0 : i0 + t]
        region = self._buf[:, i0 - p.pre_max : i0 + t + p.post_max - 1].copy()
        if end is not None:
            region[:, max(0, end - (lo - p.pre_max)) :] = -np.inf
        starts = np.arange(lo, hi)
        region[:, : max(0, -(lo - p.pre_max))] = -np.inf  # frames before the clip
        mx = sliding_window_view(region, p.pre_max + p.post_max, axis=-1)[:, :t].max(axis=-1)
        avg_win = self._buf[:, i0 - p.pre_avg : i0 + t + p.post_avg - 1]
        sums = sliding_window_view(avg_win, p.pre_avg + p.post_avg, axis=-1)[:, :t].sum(axis=-1)
        right = starts + p.post_avg if end is None else np.minimum(starts + p.post_avg, end)
        counts = right - np.maximum(starts - p.pre_avg, 0)
        cand = (x == mx) & (x >= sums / counts + p.delta[:, None]) & (x >= p.threshold[:, None])
        ks: list[int] = []
        js: list[int] = []
        for j_rel in np.flatnonzero(cand.any(axis=0)):  # few candidate frames: refractory in time order
            j = lo + int(j_rel)
            for k in np.flatnonzero(cand[:, j_rel]):
                if j - self._last[k] > p.wait:
                    self._last[k] = j
                    ks.append(int(k))
                    js.append(j)
        return np.asarray(ks, np.int64), np.asarray(js, np.int64)

    def process(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed ``[K, m]`` probabilities of the next frames; returns ``(classes, frames)`` of final peaks."""
        probs = np.asarray(probs)
        if probs.shape[1]:
            self._append(probs.astype(np.float64))
            self._n += probs.shape[1]
        hi = self._n - self.p.delay
        out = self._decide(self._next, hi, None)
        self._next = max(self._next, hi)
        return out

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """End of the clip: decide the remaining frames with windows truncated at the end."""
        out = self._decide(self._next, self._n, self._n)
        self._next = self._n
        return out
