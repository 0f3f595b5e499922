"""Real FFTs along the last axis into preallocated outputs, allocating nothing (numpy >= 2.0).

``np.fft.rfft(a, out=...)`` writes in place but converts its normalisation factor (a Python number) to a new
0-d array on every call; these call numpy's pocketfft gufuncs with the same factor held in a 0-d array, so
the results are those of ``np.fft.rfft`` / ``np.fft.irfft`` (norm "backward") bit for bit. Older numpy falls
back to the public functions (which allocate).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

try:  # numpy >= 2.0
    _pfu: Any = importlib.import_module("numpy.fft._pocketfft_umath")
except ImportError:  # pragma: no cover - numpy 1.x
    _pfu = None

__all__ = ["RealFFT"]

_AXES = [(-1,), (), (-1,)]


class RealFFT:
    """``rfft``/``irfft`` of length ``n`` over the last axis of float64/complex128 arrays, into ``out``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._one = np.ones((), dtype=np.float64)  # np.fft.rfft's factor (norm "backward": 1)
        self._inv = np.array(np.reciprocal(n, dtype=np.float64))  # np.fft.irfft's factor (1 / n)
        fwd: Any = None
        inv: Any = None
        if _pfu is not None:
            fwd = getattr(_pfu, "rfft_n_even" if n % 2 == 0 else "rfft_n_odd", None)
            inv = getattr(_pfu, "irfft", None)
        self._fwd, self._bwd = fwd, inv

    def rfft(self, a: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``np.fft.rfft(a, axis=-1)`` into ``out`` (complex128, last axis ``n // 2 + 1``)."""
        if self._fwd is not None and a.dtype == np.float64 and out.dtype == np.complex128:
            self._fwd(a, self._one, axes=_AXES, out=out)
        else:
            out[...] = np.fft.rfft(a, axis=-1)
        return out

    def irfft(self, a: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``np.fft.irfft(a, n, axis=-1)`` into ``out`` (float64, last axis ``n``)."""
        if self._bwd is not None and a.dtype == np.complex128 and out.dtype == np.float64:
            self._bwd(a, self._inv, axes=_AXES, out=out)
        else:
            out[...] = np.fft.irfft(a, n=self.n, axis=-1)
        return out
