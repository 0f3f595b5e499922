"""Streaming alpha-Wiener masking: STFT of mixture and stems, masks, inverse STFT, frame by frame.

Equal to the offline masking (centred reflect-padded STFT, overlap-add with window-envelope normalisation)
on the whole clip, with a constant delay of ``n_fft`` samples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["StreamingWiener"]


class StreamingWiener:
    """Aligned ``mixture [m]`` and ``stems [K, m]`` in, masked stems ``[K, m]`` out, ``n_fft`` samples later.

    Parameters
    ----------
    n_classes
        Number of stems.
    n_fft, hop
        STFT size and hop (periodic Hann window).
    alpha
        Mask exponent: ``|S_i|^alpha / sum_j |S_j|^alpha``.
    eps
        Added to the mask denominator.
    """

    def __init__(self, n_classes: int, n_fft: int = 1024, hop: int = 256, alpha: float = 1.0, eps: float = 1e-8):
        self.k, self.n_fft, self.hop, self.alpha, self.eps = n_classes, n_fft, hop, float(alpha), eps
        self.half = n_fft // 2
        self.delay = n_fft
        self.window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float64)
        self._w2 = self.window**2
        self._in = np.zeros((n_classes + 1, 4 * n_fft), dtype=np.float64)  # row 0 mixture, rows 1.. stems
        self._y = np.zeros((n_classes, 4 * n_fft), dtype=np.float64)
        self._env = np.zeros(4 * n_fft, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._n = 0  # input samples received
        self._started = False
        self._in_base = 0  # padded index of _in[:, 0]
        self._in_len = 0
        self._frame = 0  # next frame to compute
        self._y_base = 0  # padded index of _y[:, 0]
        self._y[...] = 0.0
        self._env[...] = 0.0
        self._emitted = 0  # output samples returned

    @staticmethod
    def _grow(a: np.ndarray, need: int) -> np.ndarray:
        if need <= a.shape[-1]:
            return a
        new = np.zeros((*a.shape[:-1], max(need, 2 * a.shape[-1])), dtype=a.dtype)
        new[..., : a.shape[-1]] = a
        return new

    def _append(self, x: np.ndarray) -> None:
        need = self._in_len + x.shape[-1]
        self._in = self._grow(self._in, need)
        self._in[:, self._in_len : need] = x
        self._in_len = need

    def _compute(self) -> None:
        """All frames whose samples are buffered: masks, inverse FFT, overlap-add."""
        hop, n_fft = self.hop, self.n_fft
        avail = self._in_base + self._in_len  # padded samples known
        c1 = (avail - n_fft) // hop + 1 if avail >= n_fft else 0
        if c1 <= self._frame:
            return
        c0 = self._frame
        s0 = c0 * hop - self._in_base
        frames = np.lib.stride_tricks.sliding_window_view(self._in[:, s0 : s0 + (c1 - c0 - 1) * hop + n_fft], n_fft, -1)
        spec = np.fft.rfft(frames[:, ::hop] * self.window, axis=-1)  # [K+1, m, F]
        mag = np.abs(spec[1:])
        if self.alpha != 1.0:
            mag = mag**self.alpha
        masked = mag / (mag.sum(axis=0, keepdims=True) + self.eps) * spec[:1]
        y = np.fft.irfft(masked, n=n_fft, axis=-1) * self.window  # [K, m, n_fft]
        end = (c1 - 1) * hop + n_fft - self._y_base
        self._y = self._grow(self._y, end)
        self._env = self._grow(self._env, end)
        for i in range(c1 - c0):  # one vector add per frame (a handful per block)
            a = (c0 + i) * hop - self._y_base
            self._y[:, a : a + n_fft] += y[:, i]
            self._env[a : a + n_fft] += self._w2
        self._frame = c1
        drop = self._frame * hop - self._in_base  # input samples before the next frame are no longer needed
        if drop > 0:
            self._in[:, : self._in_len - drop] = self._in[:, drop : self._in_len]
            self._in_len -= drop
            self._in_base += drop

    def _start(self) -> None:
        head = self._in[:, 1 : self.half + 1][:, ::-1].copy()
        body = self._in[:, : self._in_len].copy()
        self._in_len = 0
        self._append(head)
        self._append(body)
        self._started = True

    def _emit(self, m: int, ready: int) -> np.ndarray:
        """Next ``m`` outputs; masked samples ``t < ready`` are final, later ones must not be asked for."""
        out = np.zeros((self.k, m), dtype=np.float32)
        t0 = self._emitted - self.delay  # masked sample of output column 0
        lo = max(0, -t0)
        hi = min(m, ready - t0)
        if hi > lo:
            p0 = t0 + lo + self.half - self._y_base
            seg = slice(p0, p0 + hi - lo)
            out[:, lo:hi] = self._y[:, seg] / self._env[seg]
            done = p0 + hi - lo  # padded samples fully emitted: shift them out
            self._y[:, : self._y.shape[-1] - done] = self._y[:, done:]
            self._y[:, self._y.shape[-1] - done :] = 0.0
            self._env[: self._env.shape[-1] - done] = self._env[done:]
            self._env[self._env.shape[-1] - done :] = 0.0
            self._y_base += done
        self._emitted += m
        return out

    def process(self, mixture: np.ndarray, stems: np.ndarray) -> np.ndarray:
        """Feed aligned samples; returns ``[K, m]`` masked stems delayed by :attr:`delay` samples."""
        m = mixture.shape[-1]
        x = np.empty((self.k + 1, m), dtype=np.float64)
        x[0] = mixture
        x[1:] = stems
        self._n += m
        self._append(x)
        if not self._started:
            if self._in_len <= self.half:
                return self._emit(m, 0)
            self._start()
        self._compute()
        ready = self._frame * self.hop - self.half  # masked samples whose frames are all computed
        return self._emit(m, ready)

    def flush(self) -> np.ndarray:
        """End of the clip: reflect-pad the end, finish the frames, return the last ``delay`` samples."""
        n = self._n
        if n <= self.half:
            raise ValueError(f"clip too short for masking: {n} samples, need more than {self.half}")
        if not self._started:
            self._start()
        tail = self._in[:, self._in_len - self.half - 1 : self._in_len - 1][:, ::-1].copy()
        self._append(tail)
        self._compute()
        return self._emit(self.delay, n)
