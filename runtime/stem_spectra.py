"""STFT frames of the synthesized stems without transforming them: each hit's one-shot spectrum, shifted.

Hits start on the model's hop grid (sample ``j * hop`` of frame ``j``), so frame ``t`` of a stem is the sum over
its hits of ``amplitude * P[t - j]``, where ``P`` is the STFT of the class's one-shot alone (zero around it);
the one-shot spectra are computed once per bank. Only the first and last frames of a clip, whose windows
reach into the reflect padding, are transformed from the stems themselves.
"""

from __future__ import annotations

import numpy as np
from idm.runtime.block_wiener import reflect_indices
from idm.runtime.sequencer import HitSequencer

__all__ = ["StemSpectra"]


class StemSpectra:
    """Frames ``[t0, t1)`` of the stems' centred STFT (periodic Hann, reflect padding) of a clip of ``n`` samples.

    Parameters
    ----------
    sequencer
        The hits and bank (every hit must start on a multiple of ``hop``).
    n
        Clip length in samples.
    n_fft, hop
        STFT size and hop.
    """

    def __init__(self, sequencer: HitSequencer, n: int, n_fft: int, hop: int) -> None:
        if np.any(sequencer.starts % hop):
            raise ValueError("hits must start on the hop grid")
        self.seq, self.n, self.n_fft, self.hop = sequencer, int(n), n_fft, hop
        half = n_fft // 2
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
        length = sequencer.length
        self.first = -((half - 1) // hop)  # first frame (relative to the hit's) whose window sees the one-shot
        self.last = (length - 1 + half) // hop
        z0 = self.first * hop - half
        z = np.zeros((sequencer.n_classes, (self.last - self.first) * hop + n_fft), dtype=np.float64)
        z[:, -z0 : -z0 + length] = sequencer.bank
        view = np.lib.stride_tricks.sliding_window_view(z, n_fft, axis=-1)[:, ::hop]
        self.shots = np.fft.rfft(view * self.window, axis=-1).astype(np.complex64)  # [K, U, F]
        self.frame_of_hit = sequencer.starts // hop
        self.n_frames = self.n // hop + 1
        self.inner = (-(-half // hop), (self.n - half) // hop + 1)  # frames whose windows lie inside the clip

    def _hits(self, t0: int, t1: int) -> tuple[int, int]:
        """Index range (into the sequencer's sorted hits) of hits that sound in frames ``[t0, t1)``."""
        j = self.frame_of_hit
        return int(np.searchsorted(j, t0 - self.last, side="left")), int(np.searchsorted(j, t1 - self.first))

    def __call__(self, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """``(classes [A], spectra [A, t1 - t0, n_fft // 2 + 1] complex64)``: only classes that sound there.

        Every other class's frames are exactly zero.
        """
        lo, hi = self._hits(t0, t1)
        seq = self.seq
        active = np.flatnonzero(
            np.bincount(seq.classes[lo:hi])
        )  # sorted classes that sound (np.unique imports numpy.ma)
        out = np.zeros((active.size, t1 - t0, self.n_fft // 2 + 1), dtype=np.complex64)
        if active.size == 0:
            return active, out
        row = np.searchsorted(active, seq.classes[lo:hi])
        for r, i in zip(row, range(lo, hi), strict=True):  # one vector add per hit
            j = int(self.frame_of_hit[i])
            a, b = max(t0, j + self.first), min(t1, j + self.last + 1)
            if b > a:
                u = a - j - self.first
                out[r, a - t0 : b - t0] += seq.amplitudes[i] * self.shots[seq.classes[i], u : u + b - a]
        for t in range(t0, t1):  # the clip's edge frames, from the stems themselves
            if self.inner[0] <= t < self.inner[1]:
                continue
            e0 = t * self.hop - self.n_fft // 2
            idx = reflect_indices(e0, e0 + self.n_fft, self.n)
            a, b = int(idx.min()), int(idx.max()) + 1
            frame = seq.render(a, b)[active][:, idx - a].astype(np.float64)
            out[:, t - t0] = np.fft.rfft(frame * self.window, axis=-1)
        return active, out
