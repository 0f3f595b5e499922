"""Onset and velocity targets on the model's frame grid (frame j <-> sample hop * j)."""

from __future__ import annotations

import numpy as np

from idm.classes import CLASSES

__all__ = ["HOP", "frame_of", "n_frames", "onset_targets"]

#: Hop of the model's front end (``FrontendConfig.hop``), in samples at 44.1 kHz.
HOP = 256


def n_frames(n_samples: int, hop: int = HOP) -> int:
    """Frames the front end gives for ``n_samples`` (``ceil(n / hop) + 1``, as ``idm.model.frontend.n_frames``)."""
    return -(-n_samples // hop) + 1


def frame_of(sample: np.ndarray, hop: int = HOP) -> np.ndarray:
    """Nearest frame of sample positions (halves round up): ``floor(s / hop + 1/2)``."""
    return np.floor(np.asarray(sample, dtype=np.float64) / hop + 0.5).astype(np.int64)


def onset_targets(
    sample: np.ndarray, cls: np.ndarray, velocity: np.ndarray, n_samples: int, hop: int = HOP
) -> tuple[np.ndarray, np.ndarray]:
    """Onset (0/1) and velocity (MIDI / 127, the loudest hit where two share a frame) targets, ``[9, F]`` each.

    Hits outside ``0 <= sample < n_samples`` are left out.
    """
    f = n_frames(n_samples, hop)
    onsets = np.zeros((len(CLASSES), f), dtype=np.float32)
    vel = np.zeros((len(CLASSES), f), dtype=np.float32)
    s = np.asarray(sample, dtype=np.int64)
    keep = (s >= 0) & (s < n_samples)
    fr, c = frame_of(s[keep], hop), np.asarray(cls, dtype=np.int64)[keep]
    onsets[c, fr] = 1.0
    np.maximum.at(vel, (c, fr), np.asarray(velocity, dtype=np.float32)[keep] / 127.0)
    return onsets, vel
