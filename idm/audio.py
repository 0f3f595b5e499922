"""Audio input gate and file I/O: read, validate, downmix, resample (soxr); write WAV atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from idm.errors import AudioInputError

__all__ = ["AudioClip", "check_audio", "read_audio", "resample"]

#: Shortest input accepted, in seconds (one STFT window at 44.1 kHz is 23 ms).
MIN_SECONDS = 0.05


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
    bad = ~np.isfinite(x)
    if bad.any():
        raise AudioInputError(
            f"{name}: {int(bad.sum())} samples are NaN or infinite (first at sample {int(bad.argmax())})"
        )
    min_n = int(MIN_SECONDS * sample_rate)
    if x.size < min_n:
        raise AudioInputError(
            f"{name}: too short ({x.size} samples, {x.size / sample_rate * 1000:.1f} ms); at least "
            f"{MIN_SECONDS * 1000:.0f} ms is needed"
        )
    if not np.any(x):
        raise AudioInputError(f"{name}: audio is silent (all samples are zero)")
    return x.astype(np.float32, copy=False)


def read_audio(path: str | Path, sample_rate: int) -> AudioClip:
    """Read an audio file, downmix stereo, resample to ``sample_rate`` and validate.

    Raises :class:`AudioInputError` with a one-line message naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"{path}: file not found")
    if path.is_dir():
        raise AudioInputError(f"{path}: is a folder, not an audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        msg = str(e).split(":")[-1].strip() or "unknown format"
        raise AudioInputError(f"{path}: not a readable audio file ({msg})") from None
    except (OSError, RuntimeError, TypeError, ValueError) as e:
        raise AudioInputError(
            f"{path}: cannot read audio ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    n, channels = data.shape
    if channels > 2:
        raise AudioInputError(
            f"{path}: {channels} channels; a mono or stereo drum mix is expected (downmix it first, "
            f"e.g. 'sox in.wav -c 1 out.wav')"
        )
    mono = check_audio(data.mean(axis=1) if channels == 2 else data[:, 0], str(path), sr)
    mono = resample(np.ascontiguousarray(mono), sr, sample_rate)
    return AudioClip(mono, sample_rate, sr, channels, n)
