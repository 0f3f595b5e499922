"""Streaming log-mel front end in numpy, equal to the offline one (reflect start, zero/reflect end flush)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from idm.errors import AudioInputError

__all__ = ["FrontendParams", "StreamingLogMel"]

#: Frames per FFT call.
FFT_BATCH = 64


@dataclass(frozen=True)
class FrontendParams:
    """Log-mel parameters as written in a bundle manifest (``frontend`` section)."""

    sample_rate: int
    n_fft: int
    hop: int
    n_mels: int
    log_eps: float


class StreamingLogMel:
    """Audio blocks in, log-mel frames ``[m, n_mels]`` (float32) out, frame for frame equal to offline.

    Offline, the clip is zero-padded at the end to a multiple of ``hop``, reflect-padded by ``n_fft // 2``
    on both sides and framed every ``hop`` samples. Frame ``t`` needs input samples up to
    ``hop * t + n_fft // 2``, so it comes out as soon as they have arrived; the start reflection waits for
    the first ``n_fft // 2 + 1`` samples. :meth:`flush` applies the end padding and returns the last frames.

    Parameters
    ----------
    params
        Front end parameters.
    mel_fb
        Mel filterbank ``[n_fft // 2 + 1, n_mels]``.
    capacity
        Initial buffer size in samples; it grows (one allocation) if a block does not fit.
    """

    def __init__(self, params: FrontendParams, mel_fb: np.ndarray, capacity: int = 1 << 15) -> None:
        self.p = params
        self.mel_fb = np.ascontiguousarray(mel_fb, dtype=np.float64)
        self._mel = _SparseMel(self.mel_fb)
        n = np.arange(params.n_fft)
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / params.n_fft)
        self._buf = np.zeros(max(capacity, 2 * params.n_fft), dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._len = 0  # valid samples in _buf (padded-stream coordinates, from the next frame's start)
        self._n_in = 0  # input samples received
        self._started = False  # start reflection written
        self.frames_out = 0

    def _append(self, x: np.ndarray) -> None:
        need = self._len + x.shape[0]
        if need > self._buf.shape[0]:
            new = np.zeros(max(need, 2 * self._buf.shape[0]), dtype=np.float64)
            new[: self._len] = self._buf[: self._len]
            self._buf = new
        self._buf[self._len : need] = x
        self._len = need

    def _frames(self) -> np.ndarray:
        nfft, hop = self.p.n_fft, self.p.hop
        m = 0 if self._len < nfft else (self._len - nfft) // hop + 1
        if m == 0:
            return np.zeros((0, self.p.n_mels), dtype=np.float32)
        view = np.lib.stride_tricks.sliding_window_view(self._buf[: self._len], nfft)[::hop][:m]
        out = np.empty((m, self.p.n_mels), dtype=np.float32)
        for a in range(0, m, FFT_BATCH):  # numpy's FFT is fastest on batches that fit the CPU cache
            spec = np.fft.rfft(view[a : a + FFT_BATCH] * self.window, axis=-1)
            power = spec.real**2 + spec.imag**2
            out[a : a + FFT_BATCH] = np.log(self._mel(power) + self.p.log_eps)
        used = m * hop
        self._buf[: self._len - used] = self._buf[used : self._len]
        self._len -= used
        self.frames_out += m
        return out

    def _start(self) -> None:
        """Prepend the start's reflection (``x[half], ..., x[1]``) once enough samples are buffered."""
        half = self.p.n_fft // 2
        head = self._buf[1 : half + 1][::-1].copy()
        body = self._buf[: self._len].copy()
        self._len = 0
        self._append(head)
        self._append(body)
        self._started = True

    def process(self, audio: np.ndarray) -> np.ndarray:
        """Feed mono samples; returns the log-mel frames that became complete, ``[m, n_mels]``."""
        x = np.asarray(audio, dtype=np.float64).reshape(-1)
        half = self.p.n_fft // 2
        if not self._started:
            self._n_in += x.shape[0]
            self._append(x)
            if self._len <= half:
                return np.zeros((0, self.p.n_mels), dtype=np.float32)
            self._start()
            return self._frames()
        self._n_in += x.shape[0]
        self._append(x)
        return self._frames()

    def flush(self) -> np.ndarray:
        """End of stream: zero-pad to the hop, reflect-pad the end, return the remaining frames."""
        hop, half = self.p.hop, self.p.n_fft // 2
        n_pad = -self._n_in % hop
        if not self._started:
            # whole clip is still buffered: pad, then start as usual
            self._append(np.zeros(n_pad))
            if self._len <= half:
                raise AudioInputError(f"clip too short for the front end: {self._n_in} samples, need {half + 1}")
            self._n_in += n_pad
            self._start()
        else:
            self._n_in += n_pad
            self._append(np.zeros(n_pad))
        if self._len <= half:
            raise AudioInputError(f"clip too short for the front end: {self._n_in} samples")
        tail = self._buf[self._len - half - 1 : self._len - 1][::-1].copy()
        self._append(tail)
        return self._frames()

    @property
    def samples_in(self) -> int:
        """Input samples received since :meth:`reset` (including end padding after :meth:`flush`)."""
        return self._n_in


class _SparseMel:
    """``power @ mel_fb`` over the filterbank's nonzero weights only (about 2 % of them for 128 HTK bands)."""

    def __init__(self, mel_fb: np.ndarray) -> None:
        cols, rows = np.nonzero(mel_fb.T)  # grouped by mel band, bins ascending within a band
        self.rows = rows
        self.weights = mel_fb[rows, cols]
        self.n_mels = mel_fb.shape[1]
        counts = np.bincount(cols, minlength=self.n_mels)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        self.used = counts > 0
        self._dense = mel_fb if rows.size == 0 else None

    def __call__(self, power: np.ndarray) -> np.ndarray:
        if self._dense is not None:
            return power @ self._dense
        terms = power[:, self.rows] * self.weights
        out = np.add.reduceat(terms, np.minimum(self.starts, terms.shape[1] - 1), axis=1)
        out[:, ~self.used] = 0.0  # reduceat gives a band without weights its start term, not zero
        return out
