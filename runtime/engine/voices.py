"""Voice engine: overlap-adds scaled one-shots into per-class stems at sample-exact output positions."""

from __future__ import annotations

import numpy as np

__all__ = ["VoiceEngine"]


class VoiceEngine:
    """A ring of future stem audio on the output timeline, ``[K, capacity]`` float32, preallocated.

    :meth:`trigger` adds ``amplitude * one_shot`` starting at an absolute output sample that is not yet read;
    :meth:`read` hands out the next ``n`` samples and clears them for reuse. Each hit is one vector add
    (two at the ring's wrap), so a hit costs O(one-shot length) and a block O(block length).

    Parameters
    ----------
    n_classes
        Number of stems.
    max_length
        Longest one-shot in samples.
    max_block
        Largest block :meth:`read` is asked for.
    """

    def __init__(self, n_classes: int, max_length: int, max_block: int) -> None:
        size = 1
        while size < max_length + 2 * max_block + 1:
            size *= 2
        self.capacity = size
        self.max_block = max_block
        self._ring = np.zeros((n_classes, size), dtype=np.float32)
        self._out = np.zeros((n_classes, max_block), dtype=np.float32)
        self._scaled = np.zeros(max_length, dtype=np.float32)  # amplitude * one-shot, reused by every hit
        self._amp = np.zeros((), dtype=np.float32)  # the amplitude as a 0-d operand (no conversion per hit)
        self.reset()

    def reset(self) -> None:
        """Silence everything and restart the timeline at sample 0."""
        self._ring[...] = 0.0
        self.position = 0  # absolute output index of the next sample read

    def trigger(self, cls: int, start: int, shot: np.ndarray, amplitude: float) -> None:
        """Add ``amplitude * shot`` to stem ``cls`` from absolute output sample ``start`` (>= :attr:`position`)."""
        if start < self.position:
            raise ValueError(f"voice starts at {start}, before the read position {self.position}")
        n = shot.shape[0]
        if start + n > self.position + self.capacity:
            raise ValueError("voice beyond the ring: one-shot longer than the engine was built for")
        a = start % self.capacity
        first = min(n, self.capacity - a)
        row = self._ring[cls]
        if n > self._scaled.shape[0]:
            self._scaled = np.zeros(n, dtype=np.float32)
        scaled = self._scaled[:n]
        self._amp[()] = amplitude  # rounded to float32, as ``np.float32(amplitude)``
        np.multiply(shot, self._amp, out=scaled)
        np.add(row[a : a + first], scaled[:first], out=row[a : a + first])
        if first < n:
            np.add(row[: n - first], scaled[first:], out=row[: n - first])

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples ``[K, n]`` (a view into a reused buffer), cleared in the ring afterwards."""
        if n > self.max_block:
            raise ValueError(f"block of {n} samples exceeds max_block {self.max_block}")
        a = self.position % self.capacity
        first = min(n, self.capacity - a)
        out = self._out[:, :n]
        out[:, :first] = self._ring[:, a : a + first]
        self._ring[:, a : a + first].fill(0.0)
        if first < n:
            out[:, first:] = self._ring[:, : n - first]
            self._ring[:, : n - first].fill(0.0)
        self.position += n
        return out
