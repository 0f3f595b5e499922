"""Whole-file pre-pass: validates a file input and measures its clip-level kit embedding and gains.

Offline separation synthesizes one bank from the whole clip's kit embedding; a streamed file renders
the same stems when the processor is frozen at these values (``idm-live --kit clip``, the default for
files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from idm.runtime.engine.bundle import Bundle
from idm.runtime.engine.encoder import StreamingEncoder
from idm.runtime.sources import ArraySource, FileSource, Resampler

from idm.audio import MIN_SECONDS
from idm.errors import AudioInputError

__all__ = ["ClipAnalysis", "analyse_file", "check_finite", "check_length"]


@dataclass
class ClipAnalysis:
    """What the pre-pass found; ``onset_prob`` and ``velocity`` (``[K, F]``, every model frame) when collected."""

    kit_embedding: np.ndarray  # [n_kits]
    gains: np.ndarray  # [K], project order
    n_samples: int  # at the file's rate
    onset_prob: np.ndarray | None = None
    velocity: np.ndarray | None = None
    n_model_samples: int = 0  # at the model's rate


def analyse_file(
    bundle: Bundle,
    source: FileSource | ArraySource,
    block: int = 1 << 16,
    threads: int = 1,
    *,
    encoder: StreamingEncoder | None = None,
    collect: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ClipAnalysis:
    """Stream ``source`` once through the encoder (bounded memory) and rewind it.

    ``encoder`` reuses a session (it is reset first); ``collect`` keeps every frame's onset probabilities and
    velocities (``9 x 2 x 4`` bytes per frame: 2.5 MB per 10 minutes); ``progress(frames)`` is called after each
    block with the input frames read so far. Raises :class:`AudioInputError` for
    empty, too short, silent or non-finite audio, with the same wording as ``idm separate``.
    """
    check_length(source)
    enc = encoder if encoder is not None else StreamingEncoder(bundle, threads)
    enc.reset()
    rs = Resampler(source.sample_rate, int(bundle.manifest["audio"]["sample_rate"]))
    source.rewind()
    audible = False
    pos = 0
    n_model = 0
    probs: list[np.ndarray] = []
    vels: list[np.ndarray] = []
    while True:
        x = source.read(block)
        last = source.finished or x.size == 0
        check_finite(source, x, pos)
        audible = audible or bool(np.any(x))
        y = rs(x, last=last)
        if y.size:
            f = enc.process_audio(y)
            n_model += y.size
            if collect:
                probs.append(f.onset_prob.copy())
                vels.append(f.velocity.copy())
        pos += x.size
        if progress is not None:
            progress(pos)
        if last:
            break
    if not audible:
        raise AudioInputError(f"{source.path}: audio is silent (all samples are zero)")
    f = enc.flush()
    source.rewind()
    out = ClipAnalysis(enc.kit_embedding.copy(), enc.gains.copy(), pos, n_model_samples=n_model)
    if collect:
        out.onset_prob = np.concatenate([*probs, f.onset_prob], axis=1)
        out.velocity = np.concatenate([*vels, f.velocity], axis=1)
    return out


def check_length(source: FileSource | ArraySource) -> None:
    """Raise :class:`AudioInputError` for an empty or too short input (the wording of ``idm separate``)."""
    name = str(source.path)
    if source.frames == 0:
        raise AudioInputError(f"{name}: empty audio (0 samples)")
    min_n = int(MIN_SECONDS * source.sample_rate)
    if source.frames < min_n:
        raise AudioInputError(
            f"{name}: too short ({source.frames} samples, {source.frames / source.sample_rate * 1000:.1f} ms); at "
            f"least {MIN_SECONDS * 1000:.0f} ms is needed"
        )


def check_finite(source: FileSource | ArraySource, x: np.ndarray, pos: int) -> None:
    """Raise :class:`AudioInputError` if block ``x`` (starting at input frame ``pos``) has NaN or infinite samples."""
    bad = ~np.isfinite(x)
    if bad.any():
        first = pos + int(np.argmax(bad.reshape(x.shape[0], -1).any(axis=1)))
        raise AudioInputError(f"{source.path}: {int(bad.sum())} samples are NaN or infinite (first at sample {first})")
