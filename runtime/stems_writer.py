"""Streams processor stems to WAV files at the input's rate, aligned with the input (latency removed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from idm.classes import GROUPS, group_sum
from idm.errors import OutputError

__all__ = ["StemsWriter"]


class StemsWriter:
    """Writes ``folder/<name>.wav`` (or ``.flac``) for the 9 classes or the 5 groups, one file per stem (mono or
    ``channels``).

    The processor's output sample ``t`` is the input at ``t - latency``: the first ``latency`` samples
    are dropped, the rest is resampled to ``out_rate`` (soxr stream, delay-compensated, so sample ``i``
    still lines up with the input's sample ``i``) and at :meth:`close` the files are trimmed or
    zero-padded to the input's length.

    Parameters
    ----------
    folder
        Existing folder to write into.
    stems
        9 (classes, project order) or 5 (groups).
    model_rate, out_rate
        The processor's rate and the rate of the files (the input's).
    latency
        The processor's latency in samples at ``model_rate``.
    quality
        soxr quality of the resampler (``VHQ`` for files, lower for live recordings).
    subtype, extension
        libsndfile sample format and file type of the stems (see :mod:`idm.runtime.audio_format`).
    channels
        Channels per file: :meth:`write` then takes ``[9, channels, n]`` (stereo masked stems).
    names
        File names (without extension) instead of the classes or groups: :meth:`write` then takes one row per
        name, written as given (``--replace``'s mix and sample tracks).
    """

    def __init__(
        self,
        folder: str | Path,
        stems: int,
        model_rate: int,
        out_rate: int,
        latency: int,
        quality: str = "VHQ",
        subtype: str = "FLOAT",
        extension: str = "wav",
        channels: int = 1,
        names: tuple[str, ...] | None = None,
    ) -> None:
        from idm.classes import CLASSES

        if stems not in (5, 9):
            raise ValueError(f"stems must be 9 or 5, got {stems}")
        self.names = names if names is not None else (CLASSES if stems == 9 else GROUPS)
        self.latency = int(latency)
        self.out_rate = int(out_rate)
        self.channels = int(channels)
        self._grouping = names is None and stems == 5  # files named by the caller are written as given
        self._files = [
            sf.SoundFile(str(Path(folder) / f"{n}.{extension}"), "w", self.out_rate, self.channels, subtype=subtype)
            for n in self.names
        ]
        self._rs: Any = None
        self._width = len(self.names) * self.channels  # interleaved columns: stem-major, then channel
        if out_rate != model_rate:
            import soxr

            self._rs = soxr.ResampleStream(model_rate, out_rate, self._width, dtype="float32", quality=quality)
        self.written = 0  #: frames written per file at ``out_rate``
        self.closed = False

    def _grouped(self, stems: np.ndarray) -> np.ndarray:
        return group_sum(stems) if self._grouping else stems

    def _emit(self, frames: np.ndarray, limit: int | None) -> None:
        """Write ``frames`` ``[S, channels, n]`` (at ``out_rate``), at most up to ``limit`` frames in total."""
        if limit is not None:
            frames = frames[..., : max(0, limit - self.written)]
        if frames.shape[-1] == 0:
            return
        for f, x in zip(self._files, frames, strict=True):
            f.write(x[0] if self.channels == 1 else np.ascontiguousarray(x.T))
        self.written += frames.shape[-1]

    def _resampled(self, planar: np.ndarray, last: bool = False) -> np.ndarray:
        """``[S, channels, n]`` through the resampler (one interleaved stream): ``[S, channels, m]``."""
        n_stems = self._width // self.channels
        flat = planar.reshape(self._width, planar.shape[-1])  # explicit sizes: an empty block reshapes too
        out = np.asarray(self._rs.resample_chunk(np.ascontiguousarray(flat.T), last=last))
        return out.T.reshape(n_stems, self.channels, out.shape[0])

    def write(self, start: int, stems: np.ndarray, limit: int | None = None) -> None:
        """Add processor output ``stems`` ``[9, n]`` (or ``[9, channels, n]``) whose first sample is ``start``."""
        n = stems.shape[-1]
        skip = min(n, max(0, self.latency - start))
        if skip == n:
            return
        block = self._grouped(stems.reshape(stems.shape[0], self.channels, n)[..., skip:])
        if not np.isfinite(block).all():  # the input gate refuses NaN/inf/huge input: this is a broken model
            bad = ~np.isfinite(block).all(axis=(0, 1))
            at = start + skip + int(np.argmax(bad))
            raise OutputError(f"stems: the model produced NaN or infinite samples (output sample {at})")
        if self._rs is not None:
            block = self._resampled(block)
        self._emit(block, limit)

    def close(self, length: int | None = None) -> None:
        """Flush the resampler, trim or pad every file to ``length`` frames (if given) and close them."""
        if self.closed:
            return
        try:
            if self._rs is not None:
                tail = self._resampled(np.zeros((len(self.names), self.channels, 0), dtype=np.float32), last=True)
                self._emit(tail, length)
            if length is not None and self.written < length:
                self._emit(np.zeros((len(self.names), self.channels, length - self.written), np.float32), length)
        finally:
            for f in self._files:
                f.close()
            self.closed = True
