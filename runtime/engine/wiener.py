"""Streaming alpha-Wiener masking: STFT of mixture and stems, masks, inverse STFT, frame by frame.

Equal to the offline masking (centred reflect-padded STFT, overlap-add with window-envelope normalisation)
on the whole clip, with a constant delay of ``n_fft`` samples.
"""

from __future__ import annotations

import numpy as np
from idm.runtime.engine._fft import RealFFT

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

    #: frames computed per pass of the work buffers (results do not depend on it: frames are independent)
    CHUNK = 8

    def __init__(self, n_classes: int, n_fft: int = 1024, hop: int = 256, alpha: float = 1.0, eps: float = 1e-8):
        self.k, self.n_fft, self.hop, self.alpha, self.eps = n_classes, n_fft, hop, float(alpha), eps
        self.half = n_fft // 2
        self.delay = n_fft
        self.window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float64)
        self._w2 = self.window**2
        self._fft = RealFFT(n_fft)
        self._eps = np.array(eps, dtype=np.float64)  # 0-d operand: no conversion per call
        self._set_in(np.zeros((n_classes + 1, 4 * n_fft), dtype=np.float64))  # row 0 mixture, rows 1.. stems
        self._y = np.zeros((n_classes, 4 * n_fft), dtype=np.float64)
        self._env = np.zeros(4 * n_fft, dtype=np.float64)
        k1, c, f = n_classes + 1, self.CHUNK, n_fft // 2 + 1
        # work buffers of one chunk of frames (flat: a prefix reshaped is C-contiguous, as a new array would be)
        self._fr = np.zeros(k1 * c * n_fft, dtype=np.float64)
        self._spec = np.zeros(k1 * c * f, dtype=np.complex128)
        self._mag = np.zeros(n_classes * c * f, dtype=np.float64)
        self._den = np.zeros(c * f, dtype=np.float64)
        self._magc = np.zeros(n_classes * c * f, dtype=np.complex128)
        self._yfr = np.zeros(n_classes * c * n_fft, dtype=np.float64)
        self._div = np.zeros((n_classes, 4 * n_fft), dtype=np.float64)
        self.prepare(n_fft)
        self.reset()

    def prepare(self, max_block: int) -> None:
        """Size the buffers so that blocks of up to ``max_block`` samples allocate nothing (keeps the stream)."""
        cap = 2 * (max_block + 2 * self.n_fft)
        if cap > self._in.shape[-1]:
            self._set_in(self._grow(self._in, cap))
        if cap > self._y.shape[-1]:
            self._y = self._grow(self._y, cap)
            self._env = self._grow(self._env, cap)
        if max_block > self._div.shape[-1]:
            self._div = np.zeros((self.k, max_block), dtype=np.float64)
        self._scratch = np.zeros_like(self._in)

    def reset(self) -> None:
        """Start a new stream."""
        self._n = 0  # input samples received
        self._started = False
        self._in_base = 0  # padded index of _in[:, 0]
        self._in_len = 0
        self._frame = 0  # next frame to compute
        self._y_base = 0  # padded index of _y[:, 0]
        self._y_dead = 0  # columns of _y (and _env) already emitted, dropped at the next compaction
        self._y[...] = 0.0
        self._env[...] = 0.0
        self._emitted = 0  # output samples returned

    def _set_in(self, buf: np.ndarray) -> None:
        """Use ``buf`` as the input buffer, with its frames ``[K+1, n, n_fft]`` as a strided view."""
        self._in = buf
        st, hop = buf.strides, self.hop
        n = (buf.shape[-1] - self.n_fft) // hop + 1
        self._frames_view = np.lib.stride_tricks.as_strided(
            buf, (buf.shape[0], n, self.n_fft), (st[0], hop * st[1], st[1]), writeable=False
        )

    @staticmethod
    def _grow(a: np.ndarray, need: int) -> np.ndarray:
        if need <= a.shape[-1]:
            return a
        new = np.zeros((*a.shape[:-1], max(need, 2 * a.shape[-1])), dtype=a.dtype)
        new[..., : a.shape[-1]] = a
        return new

    def _shift_in(self, drop: int) -> None:
        """Drop the first ``drop`` buffered input columns (through the scratch buffer: no overlapping copy)."""
        n = self._in_len - drop
        if self._scratch.shape[-1] < n:
            self._scratch = np.zeros((self.k + 1, n), dtype=np.float64)
        np.copyto(self._scratch[:, :n], self._in[:, drop : self._in_len])
        np.copyto(self._in[:, :n], self._scratch[:, :n])
        self._in_len = n
        self._in_base += drop

    def _reserve(self, m: int) -> int:
        """Room for ``m`` more input columns: drop the columns no frame needs any more if the buffer is full."""
        need = self._in_len + m
        if need > self._in.shape[-1] and self._started:
            drop = self._frame * self.hop - self._in_base
            if drop > 0:
                self._shift_in(drop)
                need = self._in_len + m
        if need > self._in.shape[-1]:
            self._set_in(self._grow(self._in, need))
        return need

    def _append(self, x: np.ndarray) -> None:
        need = self._reserve(x.shape[-1])
        self._in[:, self._in_len : need] = x
        self._in_len = need

    def _compact_y(self, end: int) -> None:
        """Make columns up to ``end`` (relative to the current ``_y_base``) fit: drop emitted columns, or grow."""
        if end <= self._y.shape[-1]:
            return
        d = self._y_dead
        if d > 0:
            n = self._y.shape[-1] - d
            sy = self._scratch_y(n)
            np.copyto(sy[: self.k, :n], self._y[:, d:])
            np.copyto(self._y[:, :n], sy[: self.k, :n])
            self._y[:, n:].fill(0.0)
            np.copyto(sy[0, :n], self._env[d:])
            np.copyto(self._env[:n], sy[0, :n])
            self._env[n:].fill(0.0)
            self._y_base += d
            self._y_dead = 0
            end -= d
        if end > self._y.shape[-1]:
            self._y = self._grow(self._y, end)
            self._env = self._grow(self._env, end)

    def _scratch_y(self, n: int) -> np.ndarray:
        if self._scratch.shape[-1] < n:
            self._scratch = np.zeros((self.k + 1, n), dtype=np.float64)
        return self._scratch

    def _compute(self) -> None:
        """All frames whose samples are buffered: masks, inverse FFT, overlap-add."""
        hop, n_fft = self.hop, self.n_fft
        avail = self._in_base + self._in_len  # padded samples known
        c1 = (avail - n_fft) // hop + 1 if avail >= n_fft else 0
        if c1 <= self._frame:
            return
        self._compact_y((c1 - 1) * hop + n_fft - self._y_base)
        for c0 in range(self._frame, c1, self.CHUNK):
            self._compute_frames(c0, min(c1, c0 + self.CHUNK))
        self._frame = c1

    def _compute_frames(self, c0: int, c1: int) -> None:
        """Frames ``[c0, c1)`` (at most :attr:`CHUNK`) into the overlap-add buffers, in the work buffers."""
        hop, n_fft, k = self.hop, self.n_fft, self.k
        m, f = c1 - c0, n_fft // 2 + 1
        s0 = c0 * hop - self._in_base
        assert s0 % hop == 0
        view = self._frames_view[:, s0 // hop : s0 // hop + m]  # frames start at multiples of hop in _in
        fr = self._fr[: (k + 1) * m * n_fft].reshape(k + 1, m, n_fft)
        # Broadcast operands are avoided (loops over rows instead): numpy would buffer such a loop (an allocation).
        for r in range(k + 1):
            for i in range(m):
                np.multiply(view[r, i], self.window, out=fr[r, i])
        spec = self._spec[: (k + 1) * m * f].reshape(k + 1, m, f)
        self._fft.rfft(fr, spec)  # [K+1, m, F]
        mag = self._mag[: k * m * f].reshape(k, m, f)
        np.abs(spec[1:], out=mag)
        if self.alpha != 1.0:
            mag **= self.alpha  # in place, the same power (numpy's fast paths included) as ``mag**alpha``
        den = self._den[: m * f].reshape(1, m, f)
        np.add.reduce(mag, axis=0, keepdims=True, out=den)
        np.add(den, self._eps, out=den)
        masked = self._magc[: k * m * f].reshape(k, m, f)
        for r in range(k):
            np.divide(mag[r], den[0], out=mag[r])
            np.copyto(masked[r], mag[r])  # the real ratio as complex, as the float64 * complex128 product casts it
            np.multiply(masked[r], spec[0], out=masked[r])
        y = self._yfr[: k * m * n_fft].reshape(k, m, n_fft)
        self._fft.irfft(masked, y)
        for r in range(k):
            for i in range(m):
                np.multiply(y[r, i], self.window, out=y[r, i])
        for i in range(m):  # vector adds per frame and stem (1-D: a 2-D in-place add would make numpy buffer)
            a = (c0 + i) * hop - self._y_base
            for r in range(k):
                ya = self._y[r, a : a + n_fft]
                np.add(ya, y[r, i], out=ya)
            ea = self._env[a : a + n_fft]
            np.add(ea, self._w2, out=ea)

    def _start(self) -> None:
        half, n = self.half, self._in_len
        sc = self._scratch_y(half + n)
        np.copyto(sc[:, :half], self._in[:, 1 : half + 1][:, ::-1])
        np.copyto(sc[:, half : half + n], self._in[:, :n])
        self._in_len = 0
        self._append(sc[:, : half + n])
        self._started = True

    def _emit(self, m: int, ready: int, out: np.ndarray | None = None) -> np.ndarray:
        """Next ``m`` outputs; masked samples ``t < ready`` are final, later ones must not be asked for."""
        if out is None:
            out = np.zeros((self.k, m), dtype=np.float32)
        t0 = self._emitted - self.delay  # masked sample of output column 0
        lo = max(0, -t0)
        hi = min(m, ready - t0)
        if hi > lo:
            if lo:
                out[:, :lo].fill(0.0)
            if hi < m:
                out[:, hi:].fill(0.0)
            p0 = t0 + lo + self.half - self._y_base
            n = hi - lo
            if n > self._div.shape[-1]:
                self._div = np.zeros((self.k, n), dtype=np.float64)
            env = self._env[p0 : p0 + n]
            for r in range(self.k):
                np.divide(self._y[r, p0 : p0 + n], env, out=self._div[r, :n])
            np.copyto(out[:, lo:hi], self._div[:, :n])  # float64 -> float32
            self._y_dead = p0 + n  # padded samples fully emitted: dropped at the next compaction
        else:
            out.fill(0.0)
        self._emitted += m
        return out

    def process(self, mixture: np.ndarray, stems: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Feed aligned samples; returns ``[K, m]`` masked stems delayed by :attr:`delay` samples.

        With ``out`` (float32 ``[K, m]``) the result is written there and nothing is allocated once
        :meth:`prepare` has sized the buffers for the block.
        """
        m = mixture.shape[-1]
        need = self._reserve(m)
        np.copyto(self._in[0, self._in_len : need], mixture)  # float32 -> float64 in place
        np.copyto(self._in[1:, self._in_len : need], stems)
        self._in_len = need
        self._n += m
        if not self._started:
            if self._in_len <= self.half:
                return self._emit(m, 0, out)
            self._start()
        self._compute()
        ready = self._frame * self.hop - self.half  # masked samples whose frames are all computed
        return self._emit(m, ready, out)

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
