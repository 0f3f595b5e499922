"""A preallocated delay line: mono samples in, the same samples a fixed number of samples later out."""

from __future__ import annotations

import numpy as np

__all__ = ["DelayLine"]


class DelayLine:
    """Mono float32 samples in, the same samples ``delay`` later out (a preallocated ring; no allocation per call).

    Parameters
    ----------
    delay
        Samples of delay (the first ``delay`` output samples are zeros).
    max_block
        Largest block :meth:`process` is given.
    """

    def __init__(self, delay: int, max_block: int) -> None:
        size = 1
        while size < delay + max_block + 1:
            size *= 2
        self.size, self.delay = size, int(delay)
        self._ring = np.zeros(size, dtype=np.float32)
        self._out = np.zeros(max_block, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Silence the line (a new stream)."""
        self._ring[...] = 0.0
        self._w = 0

    def _split(self, start: int, n: int) -> tuple[int, int]:
        """Ring offset of absolute index ``start`` and how many of ``n`` samples fit before the wrap."""
        a = start % self.size
        return a, min(n, self.size - a)

    def process(self, x: np.ndarray) -> np.ndarray:
        """The ``x.shape[0]`` (at most ``max_block``) delayed samples: a view valid until the next call."""
        n = x.shape[0]
        a, first = self._split(self._w, n)
        self._ring[a : a + first] = x[:first]
        self._ring[: n - first] = x[first:]
        out = self._out[:n]
        a, first = self._split(self._w - self.delay, n)
        out[:first] = self._ring[a : a + first]
        out[first:] = self._ring[: n - first]
        self._w += n
        return out
