"""First pass of a whole-file separation: read, check, log-mel and encode the clip in parallel segments.

The input is read in blocks (never whole), resampled and turned into log-mel frames by the streaming front
end, which cuts them into segments for :class:`~idm.runtime.segment_encoder.SegmentEncoder`: the frames are
those of ``idm-live`` on the same file, and so are the encoder's outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from idm.runtime.engine.bundle import Bundle
from idm.runtime.engine.frontend import FrontendParams, StreamingLogMel
from idm.runtime.prepass import ClipAnalysis, check_finite, check_length
from idm.runtime.segment_encoder import SegmentEncoder
from idm.runtime.sources import ArraySource, FileSource, Resampler

from idm.errors import AudioInputError

__all__ = ["analyse_clip", "segment_length"]

#: Input frames read per block (at the file's rate).
READ_BLOCK = 1 << 16


def segment_length(n_frames: int, workers: int, lo: int = 256, hi: int = 1024) -> int:
    """Log-mel frames per segment: the clip split evenly over the workers, within ``[lo, hi]``."""
    return int(min(hi, max(lo, -(-n_frames // max(1, workers)))))


def analyse_clip(
    bundle: Bundle,
    source: FileSource | ArraySource,
    encoder: SegmentEncoder,
    progress: Callable[[int], None] | None = None,
) -> ClipAnalysis:
    """Every model frame's onset probability and velocity, the clip's kit embedding and gains (source rewound).

    ``progress(n)`` is called with the input samples read so far.

    Raises :class:`AudioInputError` for empty, too short, silent or non-finite audio.
    """
    check_length(source)
    m = bundle.manifest
    rate, fe = int(m["audio"]["sample_rate"]), m["frontend"]
    frontend = StreamingLogMel(
        FrontendParams(rate, fe["n_fft"], fe["hop"], fe["n_mels"], fe["log_eps"]), bundle.mel_fb()
    )
    est = int(source.frames * rate / source.sample_rate) // int(fe["hop"]) + 1
    seg = segment_length(est, encoder.workers)
    counts = {"input": 0, "model": 0, "audible": 0}

    def segments() -> Iterator[tuple[int, np.ndarray, np.ndarray, int | None]]:
        rs = Resampler(source.sample_rate, rate)
        source.rewind()
        pending = np.zeros((0, frontend.p.n_mels), np.float32)  # frames not yet in a segment
        warm = pending  # the frames just before them (at most ``encoder.warmup``)
        start = 0  # log-mel frame of pending[0]
        last = False
        while not last:
            x = source.read(READ_BLOCK)
            last = source.finished or x.size == 0
            check_finite(source, x, counts["input"])
            counts["audible"] += int(np.any(x))
            counts["input"] += x.shape[0]
            if progress is not None:
                progress(counts["input"])
            y = rs(x, last=last)
            counts["model"] += y.shape[0]
            new = [frontend.process(y)] if y.size else []
            if last:
                if not counts["audible"]:
                    raise AudioInputError(f"{source.path}: audio is silent (all samples are zero)")
                new.append(frontend.flush())
            pending = np.concatenate([pending, *new])
            while pending.shape[0] > seg or (pending.shape[0] == seg and not last):
                take, pending = pending[:seg], pending[seg:]
                yield start, warm, take, None
                warm = np.concatenate([warm, take])[-encoder.warmup :] if encoder.warmup else warm[:0]
                start += seg
        yield start, warm, pending, frontend.frames_out

    probs: list[np.ndarray] = []
    vels: list[np.ndarray] = []
    pools: dict[str, np.ndarray] = {}
    for out in encoder.run(segments()):
        probs.append(out.onset_prob)
        vels.append(out.velocity)
        for name, v in out.pools.items():
            pools[name] = v if name not in pools else pools[name] + v
    source.rewind()
    kit, gains = encoder.pooled(pools, frontend.frames_out)
    return ClipAnalysis(
        kit, gains, counts["input"], np.concatenate(probs, axis=1), np.concatenate(vels, axis=1), counts["model"]
    )
