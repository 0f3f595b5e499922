"""Single-producer single-consumer float32 ring buffers, preallocated, safe to write from an audio callback.

The writer only advances :attr:`RingBuffer.written` and the reader only :attr:`RingBuffer.read`; both are
plain ints (one atomic store each under the GIL), and data is copied before the index moves, so neither
side ever waits for the other. A write that does not fit is dropped whole and remembered as a gap, which
the reader turns back into silence at the right position, so the stream's timeline never shifts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RingBuffer"]

_MAX_GAPS = 64


class RingBuffer:
    """A ring of ``capacity`` frames of ``channels`` float32 samples (frame-major, like PortAudio buffers).

    Parameters
    ----------
    capacity
        Frames held; the writer drops blocks that do not fit (see :attr:`dropped_frames`).
    channels
        Samples per frame.
    """

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError(f"capacity and channels must be positive, got {capacity}, {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self.buf = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self.written = 0  #: frames written so far (writer only)
        self.read = 0  #: frames consumed so far (reader only)
        self.dropped_frames = 0  #: frames the writer could not store (reader too slow)
        self.drops = 0  #: number of dropped writes
        # gaps: stream position (in written frames) and length of each dropped write (writer fills, reader drains)
        self._gap_pos = np.zeros(_MAX_GAPS, dtype=np.int64)
        self._gap_len = np.zeros(_MAX_GAPS, dtype=np.int64)
        self._gaps_written = 0
        self._gaps_read = 0

    # ---- writer side (audio callback or worker) -----------------------------------------------------

    def free(self) -> int:
        """Frames that can be written now."""
        return self.capacity - (self.written - self.read)

    def write(self, x: np.ndarray) -> bool:
        """Copy ``x`` (``[n, channels]``) in with at most two slice copies; drop it whole if it does not fit.

        Never allocates and never waits. Returns False when the block was dropped.
        """
        n = x.shape[0]
        if n > self.capacity - (self.written - self.read):
            self.dropped_frames += n
            self.drops += 1
            g = self._gaps_written
            if g - self._gaps_read < _MAX_GAPS:
                self._gap_pos[g % _MAX_GAPS] = self.written
                self._gap_len[g % _MAX_GAPS] = n
                self._gaps_written = g + 1
            return False
        w = self.written % self.capacity
        first = min(n, self.capacity - w)
        self.buf[w : w + first] = x[:first]
        if first < n:
            self.buf[: n - first] = x[first:]
        self.written += n  # publish after the copy
        return True

    def write_zeros(self, n: int) -> bool:
        """Write ``n`` frames of silence (same rules as :meth:`write`)."""
        if n > self.capacity - (self.written - self.read):
            self.dropped_frames += n
            self.drops += 1
            return False
        w = self.written % self.capacity
        first = min(n, self.capacity - w)
        self.buf[w : w + first] = 0.0
        if first < n:
            self.buf[: n - first] = 0.0
        self.written += n
        return True

    # ---- reader side --------------------------------------------------------------------------------

    def available(self) -> int:
        """Frames written and not yet read."""
        return self.written - self.read

    def pending_gap(self) -> int:
        """Length of a dropped write due at the current read position (0 if none): the reader inserts silence."""
        if self._gaps_read < self._gaps_written:
            i = self._gaps_read % _MAX_GAPS
            if self._gap_pos[i] <= self.read:
                n = int(self._gap_len[i])
                self._gaps_read += 1
                return n
        return 0

    def next_gap_at(self) -> int | None:
        """Read position of the next gap, or None."""
        if self._gaps_read < self._gaps_written:
            return int(self._gap_pos[self._gaps_read % _MAX_GAPS])
        return None

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` frames into ``out`` (``[m, channels]``), stopping at the next gap.

        Returns the number of frames copied.
        """
        n = min(out.shape[0], self.written - self.read)
        gap = self.next_gap_at()
        if gap is not None:
            n = min(n, max(0, gap - self.read))
        if n <= 0:
            return 0
        r = self.read % self.capacity
        first = min(n, self.capacity - r)
        out[:first] = self.buf[r : r + first]
        if first < n:
            out[first:n] = self.buf[: n - first]
        self.read += n
        return n

    def read_at(self, pos: int, out: np.ndarray) -> bool:
        """Copy frames ``[pos, pos + len(out))`` into ``out`` if all were written and are still held.

        For a reader that follows its own clock (an output callback): otherwise ``out`` is filled with
        silence and False is returned. Frames before ``pos + len(out)`` count as consumed either way.
        Never allocates.
        """
        n = out.shape[0]
        ok = pos >= 0 and pos + n <= self.written and pos >= self.written - self.capacity
        if ok:
            r = pos % self.capacity
            first = min(n, self.capacity - r)
            out[:first] = self.buf[r : r + first]
            if first < n:
                out[first:] = self.buf[: n - first]
        else:
            out.fill(0.0)
        if pos + n > self.read:
            self.read = min(pos + n, self.written)
        return ok
