"""Separation and transcription metrics: SDR (mean-removed SNR), SI-SDR, log-spectral distance, onset F-measure.

All numpy; the onset F-measure is ``mir_eval.onset.f_measure`` (imported when first used).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_DB",
    "SILENCE_DB",
    "OnsetScore",
    "is_silent",
    "lsd",
    "onset_f",
    "power_spectrogram",
    "sdr",
    "si_sdr",
]

#: A reference whose energy is this far under the mixture's (or exactly zero) is silent: no SDR is defined.
SILENCE_DB = -60.0
#: Scores are capped here (an estimate equal to its reference would be +inf dB).
MAX_DB = 100.0
_CAP = 10.0 ** (-MAX_DB / 10.0)


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=-1, keepdims=True)


def _check_pair(ref: np.ndarray, est: np.ndarray) -> None:
    if ref.shape != est.shape:
        raise ValueError(f"reference and estimate differ in shape: {ref.shape} vs {est.shape}")


def is_silent(ref: np.ndarray, mixture: np.ndarray | None = None, threshold_db: float = SILENCE_DB) -> bool:
    """Whether a reference stem is silent: all zero, or its energy ``threshold_db`` or more under the mixture's.

    Parameters
    ----------
    ref
        Reference stem ``[N]``.
    mixture
        The mixture ``[N]`` it belongs to; without it only an all-zero (after mean removal) stem is silent.
    threshold_db
        Relative energy (dB) under which a stem counts as silent.
    """
    e_ref = float(np.sum(_centred(ref) ** 2))
    if e_ref == 0.0:
        return True
    if mixture is None:
        return False
    e_mix = float(np.sum(_centred(mixture) ** 2))
    return bool(e_mix > 0.0 and 10.0 * np.log10(e_ref / e_mix) < threshold_db)


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Signal-to-distortion ratio as mean-removed SNR in dB: ``10 log10(|r|^2 / |r - e|^2)``.

    Each signal's mean is removed first. Capped at :data:`MAX_DB`; a silent (all-zero) reference
    gives ``nan`` (check :func:`is_silent` first).
    """
    ref, est = np.asarray(ref), np.asarray(est)
    _check_pair(ref, est)
    r, e = _centred(ref), _centred(est)
    num = float(np.sum(r * r))
    if num == 0.0:
        return float("nan")
    den = float(np.sum((r - e) ** 2))
    return float(10.0 * np.log10(num / max(den, num * _CAP)))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019): the estimate's projection on the reference vs the rest.

    Means are removed first; capped at :data:`MAX_DB`; ``nan`` for a silent reference.
    """
    ref, est = np.asarray(ref), np.asarray(est)
    _check_pair(ref, est)
    r, e = _centred(ref), _centred(est)
    rr = float(np.sum(r * r))
    if rr == 0.0:
        return float("nan")
    target = (float(np.sum(e * r)) / rr) * r
    num = float(np.sum(target * target))
    den = float(np.sum((e - target) ** 2))
    if num == 0.0:
        return -MAX_DB
    return float(10.0 * np.log10(num / max(den, num * _CAP)))


def power_spectrogram(x: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """Power spectrogram ``[frames, n_fft // 2 + 1]`` with a periodic Hann window, zero-padded (centred) frames."""
    x = np.asarray(x, dtype=np.float64)
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad + (-(x.size) % hop)))
    n_frames = 1 + (xp.size - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop][:n_frames]
    spec = np.fft.rfft(frames * window, axis=-1)
    return spec.real**2 + spec.imag**2


def lsd(
    ref: np.ndarray,
    est: np.ndarray,
    n_fft: int = 2048,
    hop: int = 512,
    floor_db: float = -80.0,
    frame_db: float = -60.0,
) -> float:
    """Log-spectral distance in dB between power spectrograms, averaged over the frames where the reference sounds.

    Per frame ``sqrt(mean_f (10 log10 P_ref - 10 log10 P_est)^2)``; both spectra are floored at
    ``floor_db`` under the reference's largest bin (so a silent estimate scores a finite distance);
    frames whose reference energy is more than ``frame_db`` under the loudest reference frame are
    left out. ``nan`` for an all-zero reference.
    """
    ref, est = np.asarray(ref), np.asarray(est)
    _check_pair(ref, est)
    p_ref, p_est = power_spectrogram(ref, n_fft, hop), power_spectrogram(est, n_fft, hop)
    peak = float(p_ref.max()) if p_ref.size else 0.0
    if peak == 0.0:
        return float("nan")
    floor = peak * 10.0 ** (floor_db / 10.0)
    energy = p_ref.sum(axis=-1)
    keep = energy > energy.max() * 10.0 ** (frame_db / 10.0)
    d = 10.0 * (np.log10(np.maximum(p_ref[keep], floor)) - np.log10(np.maximum(p_est[keep], floor)))
    return float(np.mean(np.sqrt(np.mean(d * d, axis=-1))))


@dataclass(frozen=True)
class OnsetScore:
    """F-measure, precision and recall of estimated onsets; all ``None`` when the reference has no onsets."""

    f: float | None
    precision: float | None
    recall: float | None
    n_ref: int
    n_est: int

    @property
    def excluded(self) -> bool:
        """True when the reference had no onsets (the class is left out of this clip's means)."""
        return self.f is None


def onset_f(ref: np.ndarray, est: np.ndarray, window: float = 0.05) -> OnsetScore:
    """``mir_eval.onset.f_measure`` of onset times (s) within ``±window``.

    A reference without onsets gives no score (``None``, counted by the caller); an empty estimate
    against a non-empty reference scores 0, as mir_eval does.
    """
    import mir_eval

    r = np.sort(np.asarray(ref, dtype=np.float64).reshape(-1))
    e = np.sort(np.asarray(est, dtype=np.float64).reshape(-1))
    if r.size == 0:
        return OnsetScore(None, None, None, 0, int(e.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on empty estimates; it scores them 0
        f, p, rec = mir_eval.onset.f_measure(r, e, window=window)
    return OnsetScore(float(f), float(p), float(rec), int(r.size), int(e.size))
