"""Onset-probability arrays (``--save-activations``): one ``.npz`` per input, beside its MIDI file.

Keys: ``onset_prob`` float32 ``[K, F]`` (per class, per model frame; frame ``j`` is at ``j / frame_rate``
seconds of the input), ``frame_rate`` (frames per second), ``class_names`` (``[K]`` strings, project order),
``delta`` and ``threshold`` (``[K]``: the peak picker's height over the local mean and absolute floor used for
the transcription), ``velocity`` float32 ``[K, F]`` when known (model scale, 1 = the trained reference level).
Read it with ``numpy.load(path)``; no pickles.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idm.errors import OutputError
from idm.files import current_umask

__all__ = ["Activations", "write_activations"]


@dataclass
class Activations:
    """What ``--save-activations`` stores (see the module docstring)."""

    onset_prob: np.ndarray  # [K, F]
    frame_rate: float
    class_names: tuple[str, ...]
    delta: np.ndarray  # [K]
    threshold: np.ndarray  # [K]
    velocity: np.ndarray | None = None  # [K, F]

    def __post_init__(self) -> None:
        k = len(self.class_names)
        if self.onset_prob.ndim != 2 or self.onset_prob.shape[0] != k:
            raise ValueError(f"onset_prob must be [{k}, F], got {self.onset_prob.shape}")
        if np.shape(self.delta) != (k,) or np.shape(self.threshold) != (k,):
            raise ValueError(f"delta and threshold must have {k} values")


def write_activations(act: Activations, path: str | Path) -> Path:
    """Write ``act`` as an uncompressed ``.npz`` at ``path``, atomically.

    Raises
    ------
    OutputError
        The file cannot be written (one line).
    """
    path = Path(path)
    arrays = {
        "onset_prob": np.asarray(act.onset_prob, dtype=np.float32),
        "frame_rate": np.float64(act.frame_rate),
        "class_names": np.asarray(act.class_names, dtype=np.str_),
        "delta": np.asarray(act.delta, dtype=np.float32),
        "threshold": np.asarray(act.threshold, dtype=np.float32),
    }
    if act.velocity is not None:
        arrays["velocity"] = np.asarray(act.velocity, dtype=np.float32)
    try:
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"{path}: cannot write activations ({e.strerror or e})") from None
    return path
