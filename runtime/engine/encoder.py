"""Streaming encoder session: onnxruntime + preallocated state, audio or log-mel in, onset frames out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from idm.runtime.engine.bundle import Bundle
from idm.runtime.engine.frontend import FrontendParams, StreamingLogMel
from idm.runtime.engine.providers import make_session

from idm.errors import AudioInputError

__all__ = ["EncoderFrames", "StreamingEncoder", "make_session"]


@dataclass
class EncoderFrames:
    """Model frames produced by one call, classes in project order.

    ``first_frame`` is the model frame index of column 0 (frame ``j`` is time ``j * hop / sample_rate``).
    """

    first_frame: int
    onset_prob: np.ndarray  # [K, m] float32
    velocity: np.ndarray  # [K, m] float32

    @property
    def n_frames(self) -> int:
        return int(self.onset_prob.shape[-1])


class StreamingEncoder:
    """Runs ``encoder.onnx`` block by block; owns the state arrays and the numpy front end.

    Life cycle: construct (sessions and buffers allocated), then :meth:`process_audio` or
    :meth:`process_logmel` per block, :meth:`flush` at the end of a clip, :meth:`reset` for a new one.
    Each call returns only the frames that are final: model frame ``j`` is returned once log-mel frame
    ``j + lookahead`` has been fed. :attr:`kit_embedding` and :attr:`gains` are the running clip values
    over every frame emitted so far (equal to the offline values after :meth:`flush`).
    """

    def __init__(self, bundle: Bundle, threads: int = 1, providers: list[str] | None = None) -> None:
        m = bundle.manifest
        self.bundle = bundle
        fe = m["frontend"]
        self.params = FrontendParams(m["audio"]["sample_rate"], fe["n_fft"], fe["hop"], fe["n_mels"], fe["log_eps"])
        self.frontend = StreamingLogMel(self.params, bundle.mel_fb())
        self.session = make_session(str(bundle.encoder_path), threads, providers)
        st = m["streaming"]
        self.lookahead = int(st["lookahead_frames"])
        self.extra_frames = int(st["extra_frames"])
        self.end_unknown = int(st["end_frame_unknown"])
        self._specs = m["graphs"]["encoder"]["state"]
        self._state = bundle.initial_state()
        self._init = {k: v.copy() for k, v in self._state.items()}
        self._out_names = ["onset_prob", "velocity", "kit_embedding", "gains"] + [s["output"] for s in self._specs]
        self._feed: dict[str, np.ndarray] = dict(self._state)
        self._end = np.array([self.end_unknown], dtype=np.int64)
        n_kits = int(m["graphs"]["synth"]["inputs"][0]["shape"][-1])
        self.kit_embedding = np.full(n_kits, 1.0 / n_kits, dtype=np.float32)
        self.gains = np.ones(len(bundle.class_names), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: initial state, empty front end."""
        for k, v in self._init.items():
            self._state[k][...] = v
        self.frontend.reset()
        self._fed = 0  # log-mel frames fed to the graph
        self._n_logmel: int | None = None  # total log-mel frames, known after flush
        self._end[0] = self.end_unknown

    def _run(self, logmel: np.ndarray) -> EncoderFrames:
        """Feed ``[1, n_mels, m]`` log-mel frames; return the final model frames they produced."""
        m = logmel.shape[-1]
        feed = self._feed
        feed["logmel"] = logmel
        feed["end_frame"] = self._end
        for s in self._specs:
            feed[s["name"]] = self._state[s["name"]]
        out = self.session.run(self._out_names, feed)
        prob, vel, kit, gains = out[:4]
        for s, v in zip(self._specs, out[4:], strict=True):
            self._state[s["name"]] = v
        self.kit_embedding = kit[0]
        self.gains = gains[0]
        first = self._fed - self.lookahead  # model frame of output column 0
        self._fed += m
        lo = max(0, -first)
        hi = m
        if self._n_logmel is not None:
            hi = min(m, self._n_logmel + self.extra_frames - first)
        return EncoderFrames(first + lo, prob[0, :, lo:hi], vel[0, :, lo:hi])

    def process_logmel(self, frames: np.ndarray) -> EncoderFrames:
        """Feed log-mel frames ``[m, n_mels]`` (time-major, as the front end returns them)."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.params.n_mels:
            raise AudioInputError(f"log-mel frames must be [m, {self.params.n_mels}], got {list(frames.shape)}")
        if frames.shape[0] == 0:
            k = len(self.gains)
            return EncoderFrames(self._fed - self.lookahead, np.zeros((k, 0), np.float32), np.zeros((k, 0), np.float32))
        return self._run(np.ascontiguousarray(frames.T[None]))

    def process_audio(self, audio: np.ndarray) -> EncoderFrames:
        """Feed a block of mono samples at the bundle's sample rate."""
        return self.process_logmel(self.frontend.process(audio))

    def flush_logmel(self, n_logmel: int) -> EncoderFrames:
        """End of a clip given as log-mel: ``n_logmel`` frames in total were fed; returns the last frames."""
        self._n_logmel = n_logmel
        self._end[0] = n_logmel
        pad = n_logmel + self.extra_frames + self.lookahead - self._fed
        zeros = np.zeros((1, self.params.n_mels, max(pad, 0)), dtype=np.float32)
        if pad <= 0:
            k = len(self.gains)
            return EncoderFrames(self._fed - self.lookahead, np.zeros((k, 0), np.float32), np.zeros((k, 0), np.float32))
        return self._run(zeros)

    def flush(self) -> EncoderFrames:
        """End of an audio stream: flush the front end, then the encoder; returns the remaining frames."""
        last = self.frontend.flush()
        a = self.process_logmel(last)
        b = self.flush_logmel(self.frontend.frames_out)
        if a.n_frames == 0:
            return b
        return EncoderFrames(
            a.first_frame, np.concatenate([a.onset_prob, b.onset_prob], 1), np.concatenate([a.velocity, b.velocity], 1)
        )
