"""Alpha-Wiener masking of a whole clip, block by block and stateless: any output range from its input span.

The clip's centred STFT (reflect padding of ``n_fft // 2`` at both ends, periodic Hann window) is the one
:class:`~idm.runtime.engine.wiener.StreamingWiener` computes, and so is the overlap-add with window-envelope
normalisation; here a block of output samples ``[s0, s1)`` is computed from the frames that touch it alone
(three frames are shared with each neighbour), so blocks can run in any order, on several threads. FFTs run
in small batches of frames (numpy's FFT is several times faster when a batch fits the CPU cache), with no
per-frame Python loop. Masks come from the synthesized stems and apply to every channel of the mixture.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["BlockWiener", "StemFrames", "reflect_indices"]

#: ``(t0, t1) -> (classes [A], STFT frames [A, t1 - t0, n_fft // 2 + 1])`` of the stems that sound in ``[t0, t1)``.
StemFrames = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def reflect_indices(e0: int, e1: int, n: int) -> np.ndarray:
    """Indices into a clip of ``n`` samples for positions ``[e0, e1)`` of its reflect-padded extension.

    Position ``-i`` reads sample ``i`` and position ``n - 1 + i`` reads ``n - 1 - i`` (numpy ``reflect``);
    positions inside ``[0, n)`` read themselves. Valid for ``-n < e0`` and ``e1 < 2 n - 1``.
    """
    idx = np.arange(e0, e1, dtype=np.int64)
    idx = np.abs(idx)
    over = idx > n - 1
    idx[over] = 2 * (n - 1) - idx[over]
    return idx


class BlockWiener:
    """Masked stems ``[K, C, s1 - s0]`` of a clip of ``n`` samples, for any block ``[s0, s1)``.

    Parameters
    ----------
    n
        Clip length in samples.
    n_fft, hop
        STFT size and hop; ``n_fft`` must be a multiple of ``hop``.
    alpha
        Mask exponent: ``|S_i|^alpha / sum_j |S_j|^alpha``.
    eps
        Added to the mask denominator (as the streaming masking does).
    batch
        Frames per FFT call.
    """

    def __init__(
        self, n: int, n_fft: int = 1024, hop: int = 256, alpha: float = 1.0, eps: float = 1e-8, batch: int = 16
    ) -> None:
        if n_fft % hop:
            raise ValueError(f"n_fft {n_fft} must be a multiple of hop {hop}")
        if n <= n_fft // 2:
            raise ValueError(f"clip too short for masking: {n} samples, need more than {n_fft // 2}")
        self.n, self.n_fft, self.hop, self.alpha, self.eps = int(n), n_fft, hop, float(alpha), eps
        self.half = n_fft // 2
        self.n_frames = self.n // hop + 1
        self.batch = max(1, int(batch))
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
        self._window32 = self.window.astype(np.float32)

    def frames(self, s0: int, s1: int) -> tuple[int, int]:
        """The frames ``[t0, t1)`` whose windows touch output samples ``[s0, s1)``."""
        hop, half = self.hop, self.half
        t0 = max(0, (s0 - half) // hop + 1)
        t1 = min(self.n_frames, (s1 - 1 + half) // hop + 1)
        return t0, t1

    def span(self, s0: int, s1: int) -> tuple[int, int]:
        """Input positions ``[e0, e1)`` (of the reflect-padded clip, original coordinates) block ``[s0, s1)`` needs."""
        t0, t1 = self.frames(s0, s1)
        return t0 * self.hop - self.half, (t1 - 1) * self.hop + self.half

    def _overlap_add(self, acc: np.ndarray, y: np.ndarray, first: int) -> None:
        """Add frames ``y [..., m, n_fft]`` into ``acc [..., hops, hop]`` from hop ``first`` on (no frame loop)."""
        hop, m = self.hop, y.shape[-2]
        parts = y.reshape(*y.shape[:-1], self.n_fft // hop, hop)
        for r in range(self.n_fft // hop):
            acc[..., first + r : first + r + m, :] += parts[..., r, :]

    def process(self, s0: int, s1: int, mix: np.ndarray, spectra: StemFrames, n_classes: int) -> np.ndarray:
        """Masked stems ``[n_classes, C, s1 - s0]`` (float32) of ``[s0, s1)``, from ``mix [C, e1 - e0]`` (:meth:`span`).

        ``spectra(t0, t1)`` gives the stems' STFT frames ``[t0, t1)`` as ``(classes, frames [A, t1 - t0, F])`` for
        the classes that sound there (the others are zero, so their masked stems are too). Summed over the
        classes, the result gives back ``mix`` wherever a stem sounds.
        """
        e0, e1 = self.span(s0, s1)
        t0, t1 = self.frames(s0, s1)
        if mix.shape[-1] != e1 - e0:
            raise ValueError(f"block [{s0}, {s1}) needs {e1 - e0} mixture samples, got {mix.shape[-1]}")
        hop, n_fft = self.hop, self.n_fft
        c, m = mix.shape[0], t1 - t0
        acc = np.zeros((n_classes, c, (e1 - e0) // hop, hop), dtype=np.float32)
        env = np.zeros(((e1 - e0) // hop, hop), dtype=np.float64)
        self._overlap_add(env, np.broadcast_to(self.window**2, (m, n_fft)), 0)
        view = np.lib.stride_tricks.sliding_window_view(mix, n_fft, axis=-1)[:, ::hop]
        for f0 in range(0, m, self.batch):
            f1 = min(m, f0 + self.batch)
            active, spec = spectra(t0 + f0, t0 + f1)
            if active.size == 0:
                continue
            x = np.fft.rfft(view[:, f0:f1] * self.window, axis=-1).astype(np.complex64)  # [C, b, F]
            mag = np.abs(spec)  # [A, b, F] float32
            if self.alpha != 1.0:
                mag **= np.float32(self.alpha)
            mask = mag / (mag.sum(axis=0, keepdims=True) + np.float32(self.eps))
            y = np.fft.irfft(mask[:, None] * x[None], n=n_fft, axis=-1)  # [A, C, b, n_fft] float32
            y *= self._window32
            for i, k in enumerate(active):  # a loop over classes (a handful), never over frames
                self._overlap_add(acc[k], y[i], f0)
        a, b = s0 - e0, s1 - e0
        return (acc.reshape(n_classes, c, -1)[..., a:b] / env.reshape(-1)[a:b]).astype(np.float32)
