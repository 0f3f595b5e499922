"""Audio input gate and file I/O: read, validate, downmix, resample (soxr); write WAV atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from idm.errors import AudioInputError

__all__ = [
    "MAX_ABS_SAMPLE",
    "MAX_RATE",
    "MIN_RATE",
    "AudioClip",
    "check_audio",
    "check_rate",
    "check_samples",
    "open_audio",
    "read_audio",
    "read_frames",
    "resample",
]

#: Shortest input accepted, in seconds (one STFT window at 44.1 kHz is 23 ms).
MIN_SECONDS = 0.05
#: Supported input sample rates, in Hz (files, arrays and devices).
MIN_RATE = 8_000
MAX_RATE = 384_000
#: Largest sample magnitude accepted (full scale is 1.0; 1000 is +60 dBFS, far beyond any real recording).
MAX_ABS_SAMPLE = 1000.0
#: Frames read per block by :func:`read_audio`: memory follows the data actually decoded, never a header's claim.
READ_BLOCK = 1 << 20


def check_rate(sample_rate: float, name: str) -> int:
    """Validate a sample rate against the supported range; returns it as an int.

    Raises
    ------
    AudioInputError
        If it is not a whole number of Hz within ``MIN_RATE..MAX_RATE``.
    """
    ok = isinstance(sample_rate, int | float | np.integer | np.floating) and not isinstance(sample_rate, bool)
    if not ok or not MIN_RATE <= sample_rate <= MAX_RATE or int(sample_rate) != sample_rate:
        raise AudioInputError(
            f"{name}: sample rate {sample_rate!r} Hz is not supported ({MIN_RATE}-{MAX_RATE} Hz; a corrupt header?)"
        )
    return int(sample_rate)


def check_samples(x: np.ndarray, name: str, offset: int = 0) -> None:
    """Raise :class:`AudioInputError` if a block has NaN, infinite or absurdly large samples.

    ``offset`` is the index of ``x[0]`` in the whole input, so the message names the first bad sample.
    """
    if x.size == 0:
        return
    peak = float(np.max(np.abs(x)))
    if peak <= MAX_ABS_SAMPLE:  # also False for NaN
        return
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argmax(bad.reshape(x.shape[0], -1).any(axis=1))) if x.ndim > 1 else int(bad.argmax())
        raise AudioInputError(
            f"{name}: {int(bad.sum())} samples are NaN or infinite (first at sample {offset + first})"
        )
    loud = np.abs(x) > MAX_ABS_SAMPLE
    first = int(np.argmax(loud.reshape(x.shape[0], -1).any(axis=1))) if x.ndim > 1 else int(loud.argmax())
    raise AudioInputError(
        f"{name}: sample {offset + first} is {peak:.3g} (full scale is 1.0; more than {MAX_ABS_SAMPLE:g} is "
        "refused: a corrupt file or a wrong sample format?)"
    )


@dataclass
class AudioClip:
    """Mono float32 audio at the model's rate plus what is needed to write outputs back."""

    samples: np.ndarray  # [N] float32 at ``sample_rate``
    sample_rate: int
    source_rate: int
    source_channels: int
    n_source_samples: int


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling of ``[N]`` or ``[C, N]`` float audio (soxr, VHQ)."""
    if sr_in == sr_out:
        return x
    import soxr

    if x.ndim == 1:
        return soxr.resample(x, sr_in, sr_out, quality="VHQ").astype(np.float32, copy=False)
    return soxr.resample(x.T, sr_in, sr_out, quality="VHQ").T.astype(np.float32, copy=False)


def check_audio(x: np.ndarray, name: str, sample_rate: int) -> np.ndarray:
    """Validate mono audio: finite, long enough, not silent; returns it as float32."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise AudioInputError(f"{name}: expected mono audio of shape [N], got shape {list(x.shape)}")
    if x.size == 0:
        raise AudioInputError(f"{name}: empty audio (0 samples)")
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioInputError(f"{name}: audio must be floating point, got {x.dtype}")
    check_rate(sample_rate, name)
    check_samples(x, name)
    min_n = int(MIN_SECONDS * sample_rate)
    if x.size < min_n:
        raise AudioInputError(
            f"{name}: too short ({x.size} samples, {x.size / sample_rate * 1000:.1f} ms); at least "
            f"{MIN_SECONDS * 1000:.0f} ms is needed"
        )
    if not np.any(x):
        raise AudioInputError(f"{name}: audio is silent (all samples are zero)")
    return x.astype(np.float32, copy=False)


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open an audio file for block reading after checking its header: sample rate and channels.

    Nothing that depends on the header's numbers is allocated here; the caller reads in blocks.

    Raises
    ------
    AudioInputError
        One line naming the file: missing, a folder, unreadable, an unsupported rate, more than 2 channels.
    """
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"{path}: file not found")
    if path.is_dir():
        raise AudioInputError(f"{path}: is a folder, not an audio file")
    if not path.is_file():
        raise AudioInputError(f"{path}: not a regular file")
    try:
        f = sf.SoundFile(str(path))
    except sf.LibsndfileError as e:
        msg = str(e).split(":")[-1].strip() or "unknown format"
        raise AudioInputError(f"{path}: not a readable audio file ({msg})") from None
    except (OSError, RuntimeError, TypeError, ValueError) as e:
        raise AudioInputError(
            f"{path}: cannot read audio ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    try:
        check_rate(int(f.samplerate), str(path))
        if f.channels > 2:
            raise AudioInputError(
                f"{path}: {f.channels} channels; a mono or stereo drum mix is expected (downmix it first, "
                f"e.g. 'sox in.wav -c 1 out.wav')"
            )
    except BaseException:
        f.close()
        raise
    return f


def read_frames(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a whole audio file as ``[frames, channels]`` float32 and its rate, checking every block.

    The file is read in blocks of :data:`READ_BLOCK` frames, so memory follows the data actually decoded,
    never the length a header claims. Raises :class:`AudioInputError` as :func:`open_audio` and
    :func:`check_samples` do.
    """
    data, sr, _ = _read_blocks(Path(path), mono=False)
    return data, sr


def _read_blocks(path: Path, mono: bool) -> tuple[np.ndarray, int, int]:
    """:func:`read_frames`, and the file's channel count; ``mono`` downmixes each block as it is read
    (``[frames, 1]``), so a stereo file never exists whole in memory."""
    with open_audio(path) as f:
        sr, channels = int(f.samplerate), int(f.channels)
        blocks: list[np.ndarray] = []
        n = 0
        while True:
            try:
                data = f.read(READ_BLOCK, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as e:
                raise AudioInputError(f"{path}: read error at frame {n} ({str(e).splitlines()[0]})") from None
            if data.shape[0] == 0:
                break
            check_samples(data, str(path), n)
            if mono and channels > 1:
                data = data.mean(axis=1, dtype=np.float32, keepdims=True)
            blocks.append(data)
            n += data.shape[0]
    width = 1 if mono else channels
    return (np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32)), sr, channels


def read_audio(path: str | Path, sample_rate: int) -> AudioClip:
    """Read an audio file, downmix stereo, resample to ``sample_rate`` and validate.

    Raises :class:`AudioInputError` with a one-line message naming the file and the problem.
    """
    data, sr, channels = _read_blocks(Path(path), mono=True)
    n = data.shape[0]
    mono = check_audio(data[:, 0], str(path), sr)
    mono = resample(np.ascontiguousarray(mono), sr, sample_rate)
    return AudioClip(mono, sample_rate, sr, channels, n)
