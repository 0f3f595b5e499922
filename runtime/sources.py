"""Audio sources for a live session: a file read in blocks, the demo loop, the input ring of a device stream.

Every source yields mono float32 blocks at its own rate; :class:`Resampler` brings them to the
processor's rate (soxr streams are delay-compensated: sample ``i`` stays at time ``i / rate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from idm.runtime.ring import RingBuffer

from idm.audio import check_rate, check_samples, open_audio
from idm.errors import AudioInputError

__all__ = ["ArraySource", "DemoSource", "FileSource", "Resampler", "RingSource", "resampler_lag"]


class FileSource:
    """An audio file (any format libsndfile reads, mono or stereo) read in blocks: downmixed to mono by
    :meth:`read`, every channel by :meth:`read_channels`.

    Raises :class:`AudioInputError` (one line, naming the file) if it is missing, a folder, unreadable, has a
    sample rate outside :data:`idm.audio.MIN_RATE`..:data:`idm.audio.MAX_RATE` or more than 2 channels, and
    from :meth:`read` for NaN, infinite or absurdly large samples (:func:`idm.audio.check_samples`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = open_audio(self.path)  # checks the rate and channels before anything is allocated
        self.sample_rate = int(self._f.samplerate)
        self.channels = int(self._f.channels)
        self.frames = int(self._f.frames)  #: length in frames at :attr:`sample_rate`
        self.position = 0

    def read_channels(self, n: int) -> np.ndarray:
        """The next ``n`` frames (fewer at the end, empty after it), every channel: float32 ``[m, channels]``."""
        try:
            data = self._f.read(n, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioInputError(f"{self.path}: read error at frame {self.position} ({e})") from None
        check_samples(data, str(self.path), self.position)
        self.position += data.shape[0]
        return data

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` frames (fewer at the end, empty after it), mono float32."""
        data = self.read_channels(n)
        if self.channels == 2:
            return (0.5 * (data[:, 0] + data[:, 1])).astype(np.float32)
        return np.ascontiguousarray(data[:, 0])

    @property
    def finished(self) -> bool:
        return self.position >= self.frames

    def rewind(self) -> None:
        self._f.seek(0)
        self.position = 0

    def close(self) -> None:
        self._f.close()


class ArraySource:
    """An array (``[n]`` mono or ``[n, channels]``, downmixed) read in blocks, like :class:`FileSource`."""

    def __init__(self, audio: np.ndarray, sample_rate: int, name: str = "<array>") -> None:
        x = np.asarray(audio, dtype=np.float32)
        check_rate(sample_rate, name)
        check_samples(x, name)
        if x.ndim == 2:
            x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
        if x.ndim != 1:
            raise AudioInputError(f"{name}: audio must be [samples] or [samples, channels], got {list(x.shape)}")
        self.path = Path(name)
        self._x = np.ascontiguousarray(x)
        self.sample_rate = int(sample_rate)
        self.channels = 1
        self.frames = int(self._x.size)
        self.position = 0

    def read(self, n: int) -> np.ndarray:
        out = self._x[self.position : self.position + n]
        self.position += out.size
        return out

    def read_channels(self, n: int) -> np.ndarray:
        """The next ``n`` frames as ``[m, 1]`` (an array source is mono)."""
        return self.read(n)[:, None]

    @property
    def finished(self) -> bool:
        return self.position >= self.frames

    def rewind(self) -> None:
        self.position = 0

    def close(self) -> None:
        pass


class DemoSource:
    """A loop (the demo drum loop) played endlessly."""

    def __init__(self, loop: np.ndarray, sample_rate: int) -> None:
        if loop.ndim != 1 or loop.size == 0:
            raise ValueError("the demo loop must be a non-empty mono array")
        self.loop = np.ascontiguousarray(loop, dtype=np.float32)
        self.sample_rate = int(sample_rate)
        self.frames: int | None = None
        self.position = 0
        self.finished = False

    def read(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.float32)
        size = self.loop.size
        done = 0
        while done < n:
            i = (self.position + done) % size
            k = min(n - done, size - i)
            out[done : done + k] = self.loop[i : i + k]
            done += k
        self.position += n
        return out

    def close(self) -> None:
        pass


class RingSource:
    """The input ring of a device stream: frames are read as they arrive, channels reduced to mono.

    Dropped writes (the worker was too slow) come back as silence at their place, so sample indices keep
    matching device frames.

    Parameters
    ----------
    ring
        The stream's input ring.
    sample_rate
        The device rate.
    channel
        Zero-based channel to use, or None for the mean of all channels.
    max_block
        Largest block returned by one :meth:`read`.
    """

    def __init__(self, ring: RingBuffer, sample_rate: float, channel: int | None = None, max_block: int = 8192) -> None:
        self.ring = ring
        self.sample_rate = round(sample_rate)
        self.channel = channel
        self._buf = np.zeros((max_block, ring.channels), dtype=np.float32)
        self._mono = np.zeros(max_block, dtype=np.float32)
        self.frames: int | None = None
        self.position = 0
        self.finished = False
        self.gaps = 0

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` frames that have arrived (a view, valid until the next call); empty if none."""
        n = min(n, self._buf.shape[0])
        gap = self.ring.pending_gap()
        if gap:
            self.gaps += 1
            self.position += gap
            return np.zeros(gap, dtype=np.float32)
        got = self.ring.read_into(self._buf[:n])
        if got == 0:
            return self._mono[:0]
        block = self._buf[:got]
        if self.channel is not None:
            self._mono[:got] = block[:, self.channel]
        elif block.shape[1] == 1:
            self._mono[:got] = block[:, 0]
        else:
            np.mean(block, axis=1, out=self._mono[:got])
        self.position += got
        return self._mono[:got]

    def close(self) -> None:
        pass


class Resampler:
    """Stream resampling (identity when the rates are equal): ``[n]`` blocks, or ``[n, channels]``."""

    def __init__(self, rate_in: int, rate_out: int, quality: str = "VHQ", channels: int = 1) -> None:
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self._rs: Any = None
        if self.rate_in != self.rate_out:
            import soxr

            self._rs = soxr.ResampleStream(self.rate_in, self.rate_out, channels, dtype="float32", quality=quality)

        self.ended = False

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample a block; ``last`` flushes the stream (later calls return nothing)."""
        if self._rs is None or self.ended:
            return x if self._rs is None else x[:0]
        self.ended = last
        return np.asarray(self._rs.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last))


def resampler_lag(rate_in: int, rate_out: int, block: int, quality: str) -> int:
    """Most output samples a soxr stream holds back when fed ``block``-frame chunks (measured; 0 if rates match).

    This is the extra delay live resampling adds before a sample can be processed.
    """
    if rate_in == rate_out:
        return 0
    import soxr

    rs = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=quality)
    zeros = np.zeros(block, dtype=np.float32)
    out, lag = 0, 0.0
    n_blocks = max(64, 4 * rate_in // block // 10)
    for i in range(n_blocks):
        out += len(rs.resample_chunk(zeros))
        if i >= n_blocks // 2:
            lag = max(lag, (i + 1) * block * rate_out / rate_in - out)
    return int(np.ceil(lag))
