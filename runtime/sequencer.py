"""Synthesized stems of a whole clip, any sample range on demand: each hit's scaled one-shot, added directly.

Stateless, so ranges can be rendered in any order and on several threads; equal (to float32 rounding of the
same adds) to what :class:`~idm.runtime.engine.voices.VoiceEngine` plays when the same hits are triggered.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HitSequencer"]


class HitSequencer:
    """Hits ``(class, start sample, amplitude)`` and a bank ``[K, L]`` -> stems ``[K, b - a]`` for ``[a, b)``.

    Parameters
    ----------
    bank
        One-shots ``[K, L]`` float32, project class order.
    classes, starts, amplitudes
        One entry per hit: class index, first sample (model rate), amplitude (velocity times track gain).
    """

    def __init__(self, bank: np.ndarray, classes: np.ndarray, starts: np.ndarray, amplitudes: np.ndarray) -> None:
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        order = np.argsort(np.asarray(starts, dtype=np.int64), kind="stable")
        self.classes = np.asarray(classes, dtype=np.int64)[order]
        self.starts = np.asarray(starts, dtype=np.int64)[order]
        self.amplitudes = np.asarray(amplitudes, dtype=np.float32)[order]
        self.length = int(self.bank.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.bank.shape[0])

    def render(self, a: int, b: int) -> np.ndarray:
        """Stems for samples ``[a, b)`` (zero before the first hit and after the last one-shot ends)."""
        out = np.zeros((self.n_classes, max(0, b - a)), dtype=np.float32)
        lo = int(np.searchsorted(self.starts, a - self.length, side="right"))
        hi = int(np.searchsorted(self.starts, b, side="left"))
        for i in range(lo, hi):  # one vector add per hit that sounds in the range
            k, s, amp = int(self.classes[i]), int(self.starts[i]), self.amplitudes[i]
            p, q = max(s, a), min(s + self.length, b)
            if q > p:
                out[k, p - a : q - a] += amp * self.bank[k, p - s : q - s]
        return out
