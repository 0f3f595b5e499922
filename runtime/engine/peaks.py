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
        self._set_buf(np.zeros((n_classes, 1024), dtype=np.float64))
        self._count = np.array(float(params.pre_avg + params.post_avg))  # window length, a 0-d operand
        self._any = np.zeros((), dtype=bool)
        self._work = 0
        self._ensure_work(64)
        self.reset()

    def _set_buf(self, buf: np.ndarray) -> None:
        """Use ``buf`` as the frame buffer: a scratch buffer of its size and its averaging windows (a view)."""
        self._buf = buf
        self._scratch = np.zeros_like(buf)
        self._avg_windows = sliding_window_view(buf, self.p.pre_avg + self.p.post_avg, axis=-1)

    def _ensure_work(self, frames: int) -> None:
        """Work buffers of the allocation-free path for up to ``frames`` decided frames per call."""
        if frames <= self._work:
            return
        k = self.k
        self._w_max = np.zeros(k * frames, dtype=np.float64)
        self._w_thr = np.zeros(k * frames, dtype=np.float64)
        self._w_c1 = np.zeros(k * frames, dtype=bool)
        self._w_c2 = np.zeros(k * frames, dtype=bool)
        self._ks = np.zeros(k * frames, dtype=np.int64)
        self._js = np.zeros(k * frames, dtype=np.int64)
        # per-class delta and threshold repeated over the frames (a broadcast operand would buffer the loop)
        self._delta_rep = np.repeat(np.asarray(self.p.delta, np.float64)[:, None], frames, axis=1)
        self._thr_rep = np.repeat(np.asarray(self.p.threshold, np.float64)[:, None], frames, axis=1)
        self._work = frames

    def prepare(self, max_frames: int) -> None:
        """Preallocate for calls of up to ``max_frames`` frames: :meth:`process_view` then allocates nothing."""
        self._ensure_work(max_frames + self.p.delay + 1)
        cols = 2 * (max_frames + self._head + self._tail + 8)
        if cols > self._buf.shape[1]:
            new = np.zeros((self.k, cols), dtype=np.float64)
            new[:, : self._len] = self._buf[:, : self._len]
            self._set_buf(new)

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
            if keep > 0:  # shift through the scratch buffer (an overlapping copy would allocate)
                n = self._len - keep
                np.copyto(self._scratch[:, :n], self._buf[:, keep : self._len])
                np.copyto(self._buf[:, :n], self._scratch[:, :n])
                self._len -= keep
                self._base += keep
                need -= keep
            if need > self._buf.shape[1]:
                new = np.zeros((self.k, max(need, 2 * self._buf.shape[1])), dtype=np.float64)
                new[:, : self._len] = self._buf[:, : self._len]
                self._set_buf(new)
        np.copyto(self._buf[:, self._len : need], x)  # casts to float64 without a temporary
        self._len = need

    def _decide_steady(self, lo: int, hi: int) -> int:
        """:meth:`_decide` without allocating, for frames whose windows lie inside the clip and the buffer.

        Same operations on the same float64 values (window max, window sum / count + delta), so the same
        decisions; the peaks go to ``_ks[:n]``, ``_js[:n]``, and ``n`` is returned.
        """
        p, k = self.p, self.k
        t = hi - lo
        self._ensure_work(t)
        i0 = lo - self._base
        buf = self._buf
        x = buf[:, i0 : i0 + t]
        mx = self._w_max[: k * t].reshape(k, t)
        np.copyto(mx, buf[:, i0 - p.pre_max : i0 - p.pre_max + t])
        for d in range(1, p.pre_max + p.post_max):  # window max (exact in any order)
            np.maximum(mx, buf[:, i0 - p.pre_max + d : i0 - p.pre_max + d + t], out=mx)
        thr = self._w_thr[: k * t].reshape(k, t)
        windows = self._avg_windows[:, i0 - p.pre_avg : i0 - p.pre_avg + t]  # the windows of _decide's sums
        np.add.reduce(windows, axis=-1, out=thr)  # as .sum(axis=-1)
        np.divide(thr, self._count, out=thr)  # counts are the full window inside the clip
        np.add(thr, self._delta_rep[:, :t], out=thr)
        c1 = self._w_c1[: k * t].reshape(k, t)
        c2 = self._w_c2[: k * t].reshape(k, t)
        np.equal(x, mx, out=c1)
        np.greater_equal(x, thr, out=c2)
        np.logical_and(c1, c2, out=c1)
        np.greater_equal(x, self._thr_rep[:, :t], out=c2)
        np.logical_and(c1, c2, out=c1)
        np.any(c1, out=self._any)
        if not self._any:
            return 0
        n = 0
        last = self._last
        for j_rel in range(t):  # few candidates: refractory in time order, classes in order
            j = lo + j_rel
            for kk in range(k):
                if c1[kk, j_rel] and j - last[kk] > p.wait:
                    last[kk] = j
                    self._ks[n] = kk
                    self._js[n] = j
                    n += 1
        return n

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
        ks, js = self.process_view(probs)
        return ks.copy(), js.copy()

    def process_view(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`process`, returning views valid until the next call; allocates nothing in steady state.

        Steady state: after :meth:`prepare`, once the first ``max(pre_max, pre_avg)`` frames are decided.
        """
        probs = np.asarray(probs)
        if probs.shape[1]:
            self._append(probs)
            self._n += probs.shape[1]
        hi = self._n - self.p.delay
        lo = self._next
        p = self.p
        if hi <= lo:
            out = self._ks[:0], self._js[:0]
        elif lo - max(p.pre_max, p.pre_avg) >= 0 and hi + self._tail - 1 - self._base <= self._len:
            n = self._decide_steady(lo, hi)
            out = self._ks[:n], self._js[:n]
        else:  # the clip's first frames: windows truncated at the start
            out = self._decide(lo, hi, None)
        self._next = max(self._next, hi)
        return out

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """End of the clip: decide the remaining frames with windows truncated at the end."""
        out = self._decide(self._next, self._n, self._n)
        self._next = self._n
        return out
