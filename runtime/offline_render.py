"""Second pass of a whole-file separation: the stems, block by block on worker threads, in clip order.

The input is read again in blocks (never whole) and resampled to the model rate, one stream per channel.
Each output block is an independent job: synthesized stems straight from the hits
(:class:`~idm.runtime.sequencer.HitSequencer`), or masked stems (:class:`~idm.runtime.block_wiener.BlockWiener`
on the stems' STFT frames from :class:`~idm.runtime.stem_spectra.StemSpectra`) for every input channel.
numpy releases the GIL in its FFTs and array arithmetic, so ``workers`` threads share the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from idm.runtime.block_wiener import BlockWiener, reflect_indices
from idm.runtime.sequencer import HitSequencer
from idm.runtime.sources import ArraySource, FileSource, Resampler
from idm.runtime.stem_spectra import StemSpectra

__all__ = ["BlockRenderer"]

#: Output samples per job (model rate).
RENDER_BLOCK = 1 << 16


class BlockRenderer:
    """Stems of a clip of ``n`` model-rate samples, yielded as ``(start, stems [K, C, m])`` blocks in order.

    Parameters
    ----------
    sequencer
        Hits and bank.
    n
        Clip length at the model rate.
    sample_rate
        The model rate.
    mode
        ``masked`` (one stem per input channel) or ``synth`` (mono stems).
    n_fft, hop, alpha
        STFT and mask exponent of the masking.
    workers
        Threads rendering blocks at once.
    block
        Output samples per job.
    """

    def __init__(
        self,
        sequencer: HitSequencer,
        n: int,
        sample_rate: int,
        mode: str = "masked",
        n_fft: int = 1024,
        hop: int = 256,
        alpha: float = 1.0,
        workers: int = 1,
        block: int = RENDER_BLOCK,
    ) -> None:
        if mode not in ("masked", "synth"):
            raise ValueError(f"mode must be masked or synth, got {mode!r}")
        self.seq, self.n, self.sample_rate, self.mode = sequencer, int(n), int(sample_rate), mode
        self.workers, self.block = max(1, int(workers)), max(hop, int(block) // hop * hop)
        self.wiener = BlockWiener(self.n, n_fft, hop, alpha) if mode == "masked" else None
        self.spectra = StemSpectra(sequencer, self.n, n_fft, hop) if mode == "masked" else None

    def _job(self, s0: int, s1: int, mix: np.ndarray | None) -> np.ndarray:
        if self.wiener is None or self.spectra is None or mix is None:
            return self.seq.render(s0, s1)[:, None]
        return self.wiener.process(s0, s1, mix, self.spectra, self.seq.n_classes)

    def _mixture(
        self, source: FileSource | ArraySource, need_input: bool = False
    ) -> Iterator[tuple[int, int, np.ndarray | None, int]]:
        """``(s0, s1, mix [C, e1 - e0], e0)`` per output block: the input span ``[e0, e1)`` each block needs
        (reflected at the ends; the block itself without masking), or no mix when neither masking nor the caller
        needs it."""
        n = self.n
        if self.wiener is None and not need_input:
            for s0 in range(0, n, self.block):
                yield s0, min(n, s0 + self.block), None, s0
            return
        channels = source.channels
        rs = Resampler(source.sample_rate, self.sample_rate, channels=channels)
        source.rewind()
        buf = np.zeros((channels, 0), dtype=np.float32)
        base = 0  # model-rate sample of buf[:, 0]
        ended = False
        for s0 in range(0, n, self.block):
            s1 = min(n, s0 + self.block)
            e0, e1 = self.wiener.span(s0, s1) if self.wiener is not None else (s0, s1)
            idx = reflect_indices(e0, e1, n)
            need = int(idx.max()) + 1
            while base + buf.shape[1] < need and not ended:
                x = source.read_channels(RENDER_BLOCK)
                ended = source.finished or x.shape[0] == 0
                y = rs(x, last=ended)[: n - base - buf.shape[1]]
                buf = np.concatenate([buf, np.asarray(y, dtype=np.float32).reshape(-1, channels).T], axis=1)
            if base + buf.shape[1] < need:
                raise RuntimeError(f"the input ended at model sample {base + buf.shape[1]}, expected {n}")
            yield s0, s1, buf[:, idx - base], e0
            margin = self.wiener.n_fft + self.wiener.hop if self.wiener is not None else 0
            keep = max(0, min(s1, n) - margin)
            if keep > base:
                buf, base = buf[:, keep - base :], keep

    def _blocks(
        self, source: FileSource | ArraySource, need_input: bool
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """``(start, stems [K, C, m], input [C, m] or None)`` per block, in order, the stems on worker threads."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="idm-render") as pool:
            queue: list[tuple[int, Future[np.ndarray], np.ndarray | None]] = []
            for s0, s1, mix, e0 in self._mixture(source, need_input):
                x = None if mix is None or not need_input else mix[:, s0 - e0 : s1 - e0]
                queue.append((s0, pool.submit(self._job, s0, s1, mix), x))
                if len(queue) >= 2 * self.workers:
                    start, fut, xb = queue.pop(0)
                    yield start, fut.result(), xb
            while queue:
                start, fut, xb = queue.pop(0)
                yield start, fut.result(), xb

    def blocks_with_input(self, source: FileSource | ArraySource) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """As :meth:`blocks`, with each block's input ``[C, m]`` at the model rate (``--replace swap|add``)."""
        for start, stems, x in self._blocks(source, need_input=True):
            assert x is not None
            yield start, stems, x

    def blocks(self, source: FileSource | ArraySource) -> Iterator[tuple[int, np.ndarray]]:
        """The stems of ``source`` (rewound first), ``(start, [K, C, m])`` per block at the model rate, in order."""
        for start, stems, _ in self._blocks(source, need_input=False):
            yield start, stems
