"""Streaming log-mel front end in numpy, equal to the offline one (reflect start, zero/reflect end flush)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from idm.runtime.engine._fft import RealFFT

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
        self._sparse = _SparseMel(self.mel_fb)  # large calls (a whole file's frames)
        n = np.arange(params.n_fft)
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / params.n_fft)
        self._fft = RealFFT(params.n_fft)
        self._eps = np.array(params.log_eps, dtype=np.float64)  # a 0-d operand: no conversion per call
        self._set_buf(np.zeros(max(capacity, 2 * params.n_fft), dtype=np.float64))
        self._work_frames = 0
        self._ensure_work(8)
        self.reset()

    def _set_buf(self, buf: np.ndarray) -> None:
        """Use ``buf`` as the sample buffer, with a scratch buffer of its size and its frames (a strided view).

        Frames start at multiples of ``hop`` in the buffer (the next frame's start, ``_off``, moves by hops
        and compaction moves it to 0), so frame ``i`` of the view is the one starting at ``i * hop``.
        """
        self._buf = buf
        self._scratch = np.zeros_like(buf)
        nfft, hop = self.p.n_fft, self.p.hop
        step = buf.strides[0]
        n = (buf.shape[0] - nfft) // hop + 1
        self._windows = np.lib.stride_tricks.as_strided(buf, (n, nfft), (hop * step, step), writeable=False)

    def prepare(self, max_block: int) -> None:
        """Size the buffers so that blocks of up to ``max_block`` samples allocate nothing (keeps the stream)."""
        nfft, hop = self.p.n_fft, self.p.hop
        self._ensure_work(max_block // hop + nfft // hop + 2)
        need = 2 * (max_block + 2 * nfft)
        if need > self._buf.shape[0]:
            new = np.zeros(need, dtype=np.float64)
            new[: self._off + self._len] = self._buf[: self._off + self._len]
            self._set_buf(new)

    def _ensure_work(self, frames: int) -> None:
        """Work buffers (windowed frames, spectrum, power, mel) for ``frames`` frames per call."""
        if frames <= self._work_frames:
            return
        f, nb = self.p.n_fft // 2 + 1, self.p.n_mels
        self._fr = np.zeros((frames, self.p.n_fft), dtype=np.float64)
        self._spec = np.zeros((frames, f), dtype=np.complex128)
        self._pw = np.zeros((frames, f), dtype=np.float64)
        self._pw2 = np.zeros((frames, f), dtype=np.float64)
        self._mel = np.zeros((frames, nb), dtype=np.float64)
        self._work_frames = frames

    def reset(self) -> None:
        """Start a new stream."""
        self._off = 0  # _buf index of the next frame's first sample
        self._len = 0  # valid samples in _buf from _off (padded-stream coordinates, from the next frame's start)
        self._n_in = 0  # input samples received
        self._started = False  # start reflection written
        self.frames_out = 0

    def _append(self, x: np.ndarray) -> None:
        n = x.shape[0]
        if self._off + self._len + n > self._buf.shape[0]:
            self._compact()
        need = self._len + n
        if need > self._buf.shape[0]:
            new = np.zeros(max(need, 2 * self._buf.shape[0]), dtype=np.float64)
            new[: self._len] = self._buf[: self._len]
            self._set_buf(new)
        a = self._off + self._len
        np.copyto(self._buf[a : a + n], x)  # casts to float64 without a temporary
        self._len = need

    def _compact(self) -> None:
        """Move the kept samples to the start of the buffer (through the scratch buffer: no overlap copy)."""
        if self._off == 0:
            return
        kept = self._len
        np.copyto(self._scratch[:kept], self._buf[self._off : self._off + kept])
        np.copyto(self._buf[:kept], self._scratch[:kept])
        self._off = 0

    def _frames(self) -> np.ndarray:
        """Log-mel ``[m, n_mels]`` float64 of the complete frames: a view of a work buffer (next call reuses it)."""
        nfft, hop = self.p.n_fft, self.p.hop
        m = 0 if self._len < nfft else (self._len - nfft) // hop + 1
        if m == 0:
            return self._mel[:0]
        assert self._off % hop == 0
        view = self._windows[self._off // hop : self._off // hop + m]
        if m > self._work_frames:  # more frames than prepared for (offline blocks): batched FFTs, sparse filterbank
            mel = np.empty((m, self.p.n_mels), dtype=np.float64)
            for a in range(0, m, FFT_BATCH):  # numpy's FFT is fastest on batches that fit the CPU cache
                spec = np.fft.rfft(view[a : a + FFT_BATCH] * self.window, axis=-1)
                power = spec.real**2 + spec.imag**2
                mel[a : a + FFT_BATCH] = np.log(self._sparse(power) + self.p.log_eps)
        else:  # the streaming path: preallocated work buffers, nothing allocated
            fr, spec, pw, pw2, mel = self._fr[:m], self._spec[:m], self._pw[:m], self._pw2[:m], self._mel[:m]
            for i in range(m):  # row by row: a broadcast operand would make numpy buffer the loop (an allocation)
                np.multiply(view[i], self.window, out=fr[i])
            self._fft.rfft(fr, spec)
            s1, p1, q1 = spec.reshape(-1), pw.reshape(-1), pw2.reshape(-1)  # 1-D views: numpy's plain loops
            np.multiply(s1.real, s1.real, out=p1)  # spec.real**2 + spec.imag**2
            np.multiply(s1.imag, s1.imag, out=q1)
            np.add(p1, q1, out=p1)
            np.matmul(pw, self.mel_fb, out=mel)
            np.add(mel, self._eps, out=mel)
            np.log(mel, out=mel)
        used = m * hop
        self._off += used
        self._len -= used
        self.frames_out += m
        return mel

    def _start(self) -> None:
        """Prepend the start's reflection (``x[half], ..., x[1]``) once enough samples are buffered."""
        half = self.p.n_fft // 2
        body = self._buf[self._off : self._off + self._len]
        n = body.shape[0]
        if half + n > self._scratch.shape[0]:
            self._scratch = np.zeros(2 * (half + n), dtype=np.float64)
        np.copyto(self._scratch[:half], body[1 : half + 1][::-1])
        np.copyto(self._scratch[half : half + n], body)
        self._off, self._len = 0, 0
        self._append(self._scratch[: half + n])
        self._started = True

    def process_view(self, audio: np.ndarray) -> np.ndarray:
        """Like :meth:`process`, as float64 ``[m, n_mels]``: a view valid until the next call (no allocation).

        ``astype(np.float32)`` of it is what :meth:`process` returns.
        """
        x = np.asarray(audio).reshape(-1)
        half = self.p.n_fft // 2
        self._n_in += x.shape[0]
        self._append(x)
        if not self._started:
            if self._len <= half:
                return self._mel[:0]
            self._start()
        return self._frames()

    def process(self, audio: np.ndarray) -> np.ndarray:
        """Feed mono samples; returns the log-mel frames that became complete, ``[m, n_mels]``."""
        return self.process_view(np.asarray(audio, dtype=np.float64)).astype(np.float32)

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
        end = self._off + self._len
        tail = self._buf[end - half - 1 : end - 1][::-1].copy()
        self._append(tail)
        return self._frames().astype(np.float32)

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
