"""The streaming encoder graph over a whole clip's log-mel frames, in segments that run side by side.

The graph is stateful (every temporal convolution caches its last frames; clip pooling keeps running sums),
so one stream is a chain of calls. A segment can still start anywhere: its state is rebuilt by feeding the
``warmup`` log-mel frames before it (the total width of the graph's caches, its receptive field) from a fresh
state whose frame counter says where they sit in the clip, so its outputs are those of the unbroken stream.
The pooling sums are additive: each segment reports its own share, and one last call with every output masked
turns the clip's sums into its kit embedding and gains. Each segment is two or three large calls, and
onnxruntime releases the GIL, so ``workers`` threads keep that many cores busy (one intra-op thread each).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from idm.runtime.engine.bundle import Bundle

__all__ = ["SegmentEncoder", "SegmentOutput"]

_POOLS = ("pool_feat_sum", "pool_norm_sum", "pool_count")


@dataclass
class SegmentOutput:
    """Model frames ``first_frame ..`` of one segment (classes in project order) and its share of the pools."""

    first_frame: int
    onset_prob: np.ndarray  # [K, m]
    velocity: np.ndarray  # [K, m]
    pools: dict[str, np.ndarray]


class SegmentEncoder:
    """Runs ``encoder.onnx`` over log-mel segments on ``workers`` threads; results in clip order.

    Parameters
    ----------
    bundle
        The bundle (its manifest gives the state, look-ahead and extra frames).
    session
        An onnxruntime session of ``encoder.onnx``; concurrent runs of one session are safe.
    workers
        Segments run at once.
    """

    def __init__(self, bundle: Bundle, session: Any, workers: int = 1) -> None:
        m = bundle.manifest
        st = m["streaming"]
        self.bundle, self.session, self.workers = bundle, session, max(1, int(workers))
        self.lookahead = int(st["lookahead_frames"])
        self.extra_frames = int(st["extra_frames"])
        self.end_unknown = int(st["end_frame_unknown"])
        self.n_mels = int(m["frontend"]["n_mels"])
        self._specs = m["graphs"]["encoder"]["state"]
        if not set(_POOLS) <= {s["name"] for s in self._specs}:
            raise ValueError("this bundle's encoder keeps no pooling sums; segments cannot be combined")
        #: log-mel frames fed before a segment to rebuild its state: the widths of every cache and delay line
        self.warmup = sum(int(s["shape"][-1]) for s in self._specs if s["name"] not in ("frames_seen", *_POOLS))
        self._out_names = ["onset_prob", "velocity", "kit_embedding", "gains"] + [s["output"] for s in self._specs]

    def _run(self, state: dict[str, np.ndarray], logmel: np.ndarray, end: int) -> list[np.ndarray]:
        """One graph call on ``logmel [m, n_mels]``; updates ``state`` in place, returns the outputs."""
        feed: dict[str, np.ndarray] = dict(state)
        feed["logmel"] = np.ascontiguousarray(logmel.T[None], dtype=np.float32)
        feed["end_frame"] = np.array([end], dtype=np.int64)
        out = self.session.run(self._out_names, feed)
        for s, v in zip(self._specs, out[4:], strict=True):
            state[s["name"]] = v
        return out

    def _segment(self, start: int, warm: np.ndarray, frames: np.ndarray, n_logmel: int | None) -> SegmentOutput:
        """Input frames ``[start, start + len(frames))`` after ``warm`` (the frames just before them).

        ``n_logmel`` (the clip's log-mel length) marks the last segment: the end is flushed.
        """
        state = self.bundle.initial_state()
        state["frames_seen"][...] = start - warm.shape[0]
        if warm.shape[0]:
            self._run(state, warm, self.end_unknown)
            for name in _POOLS:
                state[name] = np.zeros_like(state[name])
        probs, vels = [], []
        if frames.shape[0]:
            out = self._run(state, frames, self.end_unknown)
            probs.append(out[0][0])
            vels.append(out[1][0])
        fed = start + frames.shape[0]
        if n_logmel is not None:
            pad = n_logmel + self.extra_frames + self.lookahead - fed
            if pad > 0:
                out = self._run(state, np.zeros((pad, self.n_mels), np.float32), n_logmel)
                probs.append(out[0][0])
                vels.append(out[1][0])
                fed += pad
        prob = np.concatenate(probs, axis=1) if probs else np.zeros((0, 0), np.float32)
        vel = np.concatenate(vels, axis=1) if vels else np.zeros((0, 0), np.float32)
        first = start - self.lookahead  # model frame of column 0
        lo = max(0, -first)
        hi = prob.shape[1]
        if n_logmel is not None:
            hi = min(hi, n_logmel + self.extra_frames - first)
        pools = {name: state[name] for name in _POOLS}
        return SegmentOutput(first + lo, prob[:, lo:hi], vel[:, lo:hi], pools)

    def pooled(self, pools: dict[str, np.ndarray], n_logmel: int) -> tuple[np.ndarray, np.ndarray]:
        """The clip's kit embedding and gains from its pooling sums (one call whose frame is masked out)."""
        state = self.bundle.initial_state()
        state.update(pools)
        state["frames_seen"][...] = n_logmel + self.extra_frames + self.lookahead + self.warmup + 1
        out = self._run(state, np.zeros((1, self.n_mels), np.float32), n_logmel)
        return out[2][0].copy(), out[3][0].copy()

    def run(self, segments: Iterable[tuple[int, np.ndarray, np.ndarray, int | None]]) -> Iterator[SegmentOutput]:
        """Encode ``(start, warm, frames, n_logmel or None)`` segments; yields their outputs in the same order.

        At most ``2 * workers`` segments are in flight, so memory stays bounded for any clip length.
        """
        with ThreadPoolExecutor(self.workers, thread_name_prefix="idm-encoder") as pool:
            queue: list[Future[SegmentOutput]] = []
            for seg in segments:
                queue.append(pool.submit(self._segment, *seg))
                if len(queue) >= 2 * self.workers:
                    yield queue.pop(0).result()
            while queue:
                yield queue.pop(0).result()
