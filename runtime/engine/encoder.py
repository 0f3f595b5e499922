"""Streaming encoder session: onnxruntime + preallocated state, audio or log-mel in, onset frames out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

    After :meth:`prepare` (the stream processor calls it), calls of up to ``max_frames`` log-mel frames on the
    CPU provider run through an onnxruntime IOBinding onto preallocated buffers: no array is allocated, the
    state is double-buffered in place, and the returned frames (and :attr:`kit_embedding`, :attr:`gains`) are
    views valid until the next call. Larger calls, other providers or an unprepared encoder return new arrays.
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
        self._n_mels = int(fe["n_mels"])
        self._k = len(bundle.class_names)
        self._max_frames = 0  # largest call served through the IOBinding (0: none, see prepare)
        self._bind: list[Any] = []
        self._parity = 0  # which of the two state buffers holds the current state
        self.reset()

    def prepare(self, max_frames: int) -> None:
        """Preallocate buffers and bindings for calls of up to ``max_frames`` log-mel frames (CPU provider only).

        Keeps the current stream's state.
        """
        if self.session.get_providers()[0] != "CPUExecutionProvider" or max_frames < 1:
            self._max_frames = 0
            self._bind = []
            return
        import onnxruntime as ort

        ov = ort.OrtValue.ortvalue_from_numpy
        mf, k, nm = int(max_frames), self._k, self._n_mels
        self._logmel_flat = np.zeros(nm * mf, dtype=np.float32)
        self._prob_flat = np.zeros(k * mf, dtype=np.float32)
        self._vel_flat = np.zeros(k * mf, dtype=np.float32)
        self._kit_buf = np.array(self.kit_embedding, dtype=np.float32).reshape(1, -1)
        self._gains_buf = np.array(self.gains, dtype=np.float32).reshape(1, -1)
        self.kit_embedding, self.gains = self._kit_buf[0], self._gains_buf[0]
        # per frame count m: contiguous [1, C, m] views of the flat buffers and their OrtValues
        self._lm_views = [self._logmel_flat[: nm * m].reshape(1, nm, m) for m in range(mf + 1)]
        self._ov_lm = [ov(v) if m else None for m, v in enumerate(self._lm_views)]
        prob_views = [self._prob_flat[: k * m].reshape(1, k, m) for m in range(mf + 1)]
        vel_views = [self._vel_flat[: k * m].reshape(1, k, m) for m in range(mf + 1)]
        self._prob_views, self._vel_views = prob_views, vel_views
        self._ov_prob = [ov(v) if m else None for m, v in enumerate(prob_views)]
        self._ov_vel = [ov(v) if m else None for m, v in enumerate(vel_views)]
        # two state buffers: a run reads one and writes the other, then they swap roles
        cur = self._state
        other = {name: v.copy() for name, v in cur.items()}
        self._sets = (cur, other) if self._parity == 0 else (other, cur)
        self._bind = []
        for p in (0, 1):
            b = self.session.io_binding()
            b.bind_ortvalue_input("end_frame", ov(self._end))
            b.bind_ortvalue_output("kit_embedding", ov(self._kit_buf))
            b.bind_ortvalue_output("gains", ov(self._gains_buf))
            for s in self._specs:
                b.bind_ortvalue_input(s["name"], ov(self._sets[p][s["name"]]))
                b.bind_ortvalue_output(s["output"], ov(self._sets[1 - p][s["name"]]))
            self._bind.append(b)
        self._max_frames = mf

    def reset(self) -> None:
        """Forget the stream: initial state, empty front end."""
        for k, v in self._init.items():
            self._state[k][...] = v  # the current buffer set (reading state starts there)
        self.frontend.reset()
        self._fed = 0  # log-mel frames fed to the graph
        self._n_logmel: int | None = None  # total log-mel frames, known after flush
        self._end[0] = self.end_unknown

    def _run(self, logmel: np.ndarray) -> EncoderFrames:
        """Feed ``[1, n_mels, m]`` log-mel frames; return the final model frames they produced."""
        m = logmel.shape[-1]
        if m <= self._max_frames:
            if logmel is not self._lm_views[m]:
                np.copyto(self._lm_views[m], logmel)
            return self._run_bound(m)
        feed = self._feed
        feed["logmel"] = logmel
        feed["end_frame"] = self._end
        for s in self._specs:
            feed[s["name"]] = self._state[s["name"]]
        out = self.session.run(self._out_names, feed)
        prob, vel, kit, gains = out[:4]
        if self._max_frames:  # keep the bound buffers current (state in place, kit and gains views)
            for s, v in zip(self._specs, out[4:], strict=True):
                np.copyto(self._state[s["name"]], v)
            np.copyto(self._kit_buf, kit)
            np.copyto(self._gains_buf, gains)
        else:
            for s, v in zip(self._specs, out[4:], strict=True):
                self._state[s["name"]] = v
            self.kit_embedding = kit[0]
            self.gains = gains[0]
        return self._frames_out(m, prob, vel)

    def _run_bound(self, m: int) -> EncoderFrames:
        """One run through the IOBinding: log-mel already in ``_lm_views[m]``, outputs land in place."""
        b = self._bind[self._parity]
        b.bind_ortvalue_input("logmel", self._ov_lm[m])
        b.bind_ortvalue_output("onset_prob", self._ov_prob[m])
        b.bind_ortvalue_output("velocity", self._ov_vel[m])
        self.session.run_with_iobinding(b)
        self._parity = 1 - self._parity
        self._state = self._sets[self._parity]
        return self._frames_out(m, self._prob_views[m], self._vel_views[m])

    def _frames_out(self, m: int, prob: np.ndarray, vel: np.ndarray) -> EncoderFrames:
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
            return self._no_frames()
        return self._run(np.ascontiguousarray(frames.T[None]))

    def _no_frames(self) -> EncoderFrames:
        if self._max_frames:
            empty = self._prob_views[0][0]
            return EncoderFrames(self._fed - self.lookahead, empty, empty)
        k = len(self.gains)
        return EncoderFrames(self._fed - self.lookahead, np.zeros((k, 0), np.float32), np.zeros((k, 0), np.float32))

    def process_audio(self, audio: np.ndarray) -> EncoderFrames:
        """Feed a block of mono samples at the bundle's sample rate."""
        mel = self.frontend.process_view(audio)  # float64 [m, n_mels], valid until the next front-end call
        m = mel.shape[0]
        if m == 0:
            return self._no_frames()
        if m <= self._max_frames:
            np.copyto(self._lm_views[m][0], mel.T)  # float64 -> float32, as the front end's astype
            return self._run_bound(m)
        return self._run(np.ascontiguousarray(mel.astype(np.float32).T[None]))

    def flush_logmel(self, n_logmel: int) -> EncoderFrames:
        """End of a clip given as log-mel: ``n_logmel`` frames in total were fed; returns the last frames."""
        self._n_logmel = n_logmel
        self._end[0] = n_logmel
        pad = n_logmel + self.extra_frames + self.lookahead - self._fed
        zeros = np.zeros((1, self.params.n_mels, max(pad, 0)), dtype=np.float32)
        if pad <= 0:
            return self._no_frames()
        return self._run(zeros)

    def flush(self) -> EncoderFrames:
        """End of an audio stream: flush the front end, then the encoder; returns the remaining frames."""
        last = self.frontend.flush()
        a = self.process_logmel(last)
        if a.n_frames and self._max_frames:  # views into the bound buffers: keep them past the next run
            a = EncoderFrames(a.first_frame, a.onset_prob.copy(), a.velocity.copy())
        b = self.flush_logmel(self.frontend.frames_out)
        if a.n_frames == 0:
            return b
        return EncoderFrames(
            a.first_frame, np.concatenate([a.onset_prob, b.onset_prob], 1), np.concatenate([a.velocity, b.velocity], 1)
        )
