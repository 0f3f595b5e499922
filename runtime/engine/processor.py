"""The stream processor: audio blocks of any size in, MIDI drum events and stems out, at one constant latency."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from idm.runtime.engine.bank import BankRefresher, BankSynth
from idm.runtime.engine.bundle import Bundle, load_bundle
from idm.runtime.engine.delay import DelayLine
from idm.runtime.engine.encoder import StreamingEncoder
from idm.runtime.engine.peaks import PickerParams, StreamingPeakPicker
from idm.runtime.engine.providers import PROVIDERS, make_session, resolve_providers
from idm.runtime.engine.voices import VoiceEngine
from idm.runtime.engine.wiener import StreamingWiener

from idm.errors import AudioInputError, ConfigError

__all__ = ["NoteEvent", "ProcessedBlock", "ProcessorConfig", "StreamProcessor"]

STEM_MODES = ("none", "synth", "masked")


@dataclass
class ProcessorConfig:
    """Options of a :class:`StreamProcessor`.

    ``freeze`` keeps the kit embedding and gains fixed at ``kit_embedding`` / ``gains`` (default: uniform kit,
    unit gains) instead of following the running clip statistics; with ``refresh_bank`` the one-shot bank is
    re-synthesized in the background whenever the running kit embedding moves by more than ``kit_tolerance``
    (L1). ``delta``/``threshold`` override the manifest's peak picking, per class with a mapping.
    """

    provider: str = "auto"
    threads: int = 1
    stems: str = "synth"
    alpha: float = 1.0
    freeze: bool = False
    kit_embedding: np.ndarray | None = None
    gains: np.ndarray | None = None
    delta: float | dict[str, float] | None = None
    threshold: float | dict[str, float] | None = None
    wait_ms: float | None = None
    max_block: int = 16384
    refresh_bank: bool = True
    kit_tolerance: float = 0.05

    def __post_init__(self) -> None:
        if self.stems not in STEM_MODES:
            raise ConfigError(f"stems must be one of {', '.join(STEM_MODES)}, got {self.stems!r}")
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be positive, got {self.alpha}")
        if self.threads < 1 or self.max_block < 1:
            raise ConfigError("threads and max_block must be at least 1")
        if self.wait_ms is not None and self.wait_ms < 0:
            raise ConfigError(f"wait_ms must be >= 0, got {self.wait_ms}")


@dataclass(frozen=True)
class NoteEvent:
    """A detected hit: project class index, GM note, MIDI velocity, its due sample on the output timeline and the
    onset probability at the picked frame (None when not known)."""

    cls: int
    note: int
    velocity: int
    sample: int
    probability: float | None = None


@dataclass
class ProcessedBlock:
    """Output of one call: ``n`` samples from output sample ``start``; ``stems`` is a view valid until the next call."""

    start: int
    events: list[NoteEvent]
    stems: np.ndarray | None


def _midi_velocity(v: float) -> int:
    """:func:`idm.midi.to_midi_velocity` of one value, without arrays (``round`` is ``rint``: half to even)."""
    return int(min(max(round(v / 2.0 * 127.0), 1), 127))


class StreamProcessor:
    """Bundle -> streaming transcription and separation; see ``docs/runtime.md`` for the timeline.

    ``process(block)`` returns exactly ``len(block)`` output samples; output sample ``t`` is the input at
    ``t - latency``. :meth:`flush` ends the clip and returns the last ``latency`` samples, so the whole
    output is ``n_input + latency`` long and ``output[latency:]`` lines up with the input sample for sample.
    Events are due at ``onset sample + latency`` on the same timeline (never at the end of a block).

    Parameters
    ----------
    bundle
        A bundle folder (hashes verified) or a loaded :class:`Bundle`.
    config
        Options; defaults give synthesized stems, CUDA if usable else CPU, one thread.
    """

    def __init__(self, bundle: Bundle | str | Path, config: ProcessorConfig | None = None) -> None:
        self.config = cfg = config or ProcessorConfig()
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        m = self.bundle.manifest
        providers = resolve_providers(cfg.provider)
        self.encoder = StreamingEncoder(self.bundle, cfg.threads, providers)
        self.provider = self.encoder.session.get_providers()[0]
        if cfg.provider == "cuda" and self.provider != PROVIDERS["cuda"]:
            raise ConfigError("provider cuda: onnxruntime could not use the GPU (no CUDA device visible?)")
        self.class_names = tuple(self.bundle.class_names)
        self.notes = np.asarray(self.bundle.gm_notes, dtype=np.int64)
        k = len(self.class_names)
        self.sample_rate = int(m["audio"]["sample_rate"])
        self.hop = int(m["frontend"]["hop"])
        self.n_fft = int(m["frontend"]["n_fft"])
        wait = None if cfg.wait_ms is None else round(cfg.wait_ms / 1000 * self.sample_rate / self.hop)
        self.picker_params = PickerParams.from_manifest(
            m["peak_picking"], list(self.class_names), cfg.delta, cfg.threshold, wait
        )
        self.picker = StreamingPeakPicker(self.picker_params, k)
        #: samples from a hit to its event and synthesized stem
        self.detect_latency = (self.encoder.lookahead + self.picker_params.delay) * self.hop + self.n_fft // 2
        self._latency = self.detect_latency + (self.n_fft if cfg.stems == "masked" else 0)

        n_kits = int(m["graphs"]["synth"]["inputs"][0]["shape"][-1])
        kit = np.full(n_kits, 1.0 / n_kits, np.float32) if cfg.kit_embedding is None else cfg.kit_embedding
        self._kit0 = np.asarray(kit, dtype=np.float32).reshape(n_kits)
        gains = np.ones(k, np.float32) if cfg.gains is None else cfg.gains
        self._gains0 = np.asarray(gains, dtype=np.float32).reshape(k)
        self.bank_synth = BankSynth(
            make_session(str(self.bundle.synth_path), cfg.threads, providers), self.bundle.noise()
        )
        self._bank0 = self._bank = self.bank_synth(self._kit0)
        self._bank_version = 0
        self.bank_updates = 0
        self._refresher = (
            BankRefresher(self.bank_synth, self._kit0, self._bank) if cfg.refresh_bank and not cfg.freeze else None
        )

        self.wiener = StreamingWiener(k, self.n_fft, self.hop, cfg.alpha) if cfg.stems == "masked" else None
        self.prepare(cfg.max_block)

    def prepare(self, max_block: int) -> None:
        """Allocate the buffers for blocks of up to ``max_block`` samples and start a new stream.

        Called by the constructor with ``config.max_block``; call it again when the host's block size grows.
        Larger blocks given to :meth:`process` still work, in pieces (and allocate while they are cut).
        """
        if max_block < 1:
            raise ConfigError(f"max_block must be at least 1, got {max_block}")
        k, cfg = len(self.class_names), self.config
        self._max_block = int(max_block)
        self.encoder.frontend.prepare(self._max_block)
        self.encoder.prepare(self._max_block // self.hop + 2)
        self.picker.prepare(self._max_block // self.hop + 2)
        self.voices = VoiceEngine(k, self.bank_synth.length, self._max_block) if cfg.stems != "none" else None
        self._mix_delay = DelayLine(self.detect_latency, self._max_block) if cfg.stems == "masked" else None
        frames = max(1, self.picker_params.delay) + self._max_block // self.hop + 2 * self.encoder.lookahead + 64
        self._vel_size = 1 << int(np.ceil(np.log2(frames + self.encoder.extra_frames)))
        self._vel = np.zeros((k, self._vel_size), dtype=np.float32)
        self._prob = np.zeros((k, self._vel_size), dtype=np.float32)  # onset probabilities, same ring as _vel
        self._stems_out = np.zeros((k, self._max_block), dtype=np.float32)
        if self.wiener is not None:
            self.wiener.prepare(self._max_block)
        # scalars of the finite-input check and the kit-distance test, written in place
        self._lo, self._hi = np.zeros((), np.float32), np.zeros((), np.float32)
        self._kit_diff = np.zeros_like(self._kit0)
        self._kit_dist = np.zeros((), np.float32)
        self._requested = self._kit0.copy()
        self.reset()

    @property
    def latency(self) -> int:
        """Samples from an input sample to the same instant in the output (stems and due times); constant."""
        return self._latency

    @property
    def max_block(self) -> int:
        """The largest block :meth:`process` handles in one piece (see :meth:`prepare`)."""
        return self._max_block

    # ---- state ----------------------------------------------------------------------------------------

    def reset(self, initial_bank: bool = False) -> None:
        """Start a new stream; the current one-shot bank is kept unless ``initial_bank`` (the one from start-up)."""
        if initial_bank:
            self._bank = self._bank0
            if self._refresher is not None:  # a bank already synthesized for the old stream is not swapped in
                self._bank_version = self._refresher.latest()[0]
        self.encoder.reset()
        self.picker.reset()
        if self.voices is not None:
            self.voices.reset()
        if self.wiener is not None and self._mix_delay is not None:
            self.wiener.reset()
            self._mix_delay.reset()
        self.kit_embedding = self._kit0.copy()
        self.gains = self._gains0.copy()
        self._requested[...] = self._kit0
        self._pending: deque[NoteEvent] = deque()
        self.samples_in = 0
        self.samples_out = 0
        self.events_out = 0
        self._flushed = False

    @property
    def refresh_pending(self) -> bool:
        """Whether a re-synthesized bank has been asked for and has not been swapped in yet."""
        r = self._refresher
        if r is None:
            return False
        return r.busy or r.has_request or r.latest()[0] != self._bank_version

    @property
    def bank(self) -> np.ndarray:
        """The one-shot bank in use ``[K, N]`` (project class order)."""
        return self._bank

    def close(self) -> None:
        """Stop the background bank thread."""
        if self._refresher is not None:
            self._refresher.close()
            self._refresher = None

    def __enter__(self) -> StreamProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- processing -----------------------------------------------------------------------------------

    def _update_kit(self) -> None:
        if self.config.freeze:
            return
        self.kit_embedding = self.encoder.kit_embedding
        self.gains = self.encoder.gains
        r = self._refresher
        if r is None:
            return
        version, _, bank = r.latest()
        if version != self._bank_version:  # swap in the finished bank (one reference assignment)
            self._bank, self._bank_version = bank, version
            self.bank_updates += 1
        d = self._kit_diff  # L1 distance |kit - requested|, without temporaries
        np.subtract(self.kit_embedding, self._requested, out=d)
        np.abs(d, out=d)
        np.add.reduce(d, out=self._kit_dist)
        if float(self._kit_dist) > self.config.kit_tolerance:
            np.copyto(self._requested, self.kit_embedding)
            r.request(self._requested)

    def _hits(self, ks: np.ndarray, js: np.ndarray) -> None:
        """Turn picked peaks (in time order, as the picker gives them) into voices and pending events."""
        for i in range(ks.shape[0]):
            k, j = int(ks[i]), int(js[i])
            v = self._vel[k, j % self._vel_size]  # float32 scalar
            start = j * self.hop + self.detect_latency
            if self.voices is not None:
                shot = self._bank[k]
                pos = self.voices.position
                amp = v * self.gains[k]
                if start >= pos:
                    self.voices.trigger(k, start, shot, float(amp))
                elif start + shot.shape[0] > pos:  # only a causal model's frame 0: start late, sample-exact tail
                    self.voices.trigger(k, pos, shot[pos - start :], float(amp))
            due = max(start + self.latency - self.detect_latency, self.samples_out)
            p = float(self._prob[k, j % self._vel_size])
            self._pending.append(NoteEvent(k, int(self.notes[k]), _midi_velocity(float(v)), due, p))

    def _analyse(self, frames_first: int, probs: np.ndarray, vel: np.ndarray, flush: bool) -> None:
        m = probs.shape[1]
        if m:  # velocities and probabilities into their rings (two slice copies at the wrap)
            a = frames_first % self._vel_size
            first = min(m, self._vel_size - a)
            self._vel[:, a : a + first] = vel[:, :first]
            self._prob[:, a : a + first] = probs[:, :first]
            if first < m:
                self._vel[:, : m - first] = vel[:, first:]
                self._prob[:, : m - first] = probs[:, first:]
        self._update_kit()
        ks, js = self.picker.process_view(probs)
        self._hits(ks, js)
        if flush:
            ks, js = self.picker.flush()
            self._hits(ks, js)

    def _due(self, end: int | None) -> list[NoteEvent]:
        out: list[NoteEvent] = []
        while self._pending and (end is None or self._pending[0].sample < end):
            out.append(self._pending.popleft())
        self.events_out += len(out)
        return out

    def _render_masked(self, x: np.ndarray, synth: np.ndarray) -> np.ndarray:
        """Masked stems for output samples whose synthesized stems are ``synth`` and delayed mix is known."""
        assert self.wiener is not None and self._mix_delay is not None
        n = synth.shape[1]
        mix = self._mix_delay.process(x)
        out = self._stems_out[:, :n]
        p0 = self.samples_out
        skip = max(0, min(n, self.detect_latency - p0))  # before the clip starts on the Wiener's timeline
        if skip:
            out[:, :skip].fill(0.0)
        if skip < n:
            self.wiener.process(mix[skip:], synth[:, skip:], out=out[:, skip:])
        return out

    def _process_chunk(self, x: np.ndarray) -> tuple[list[NoteEvent], np.ndarray | None]:
        n = x.shape[0]
        f = self.encoder.process_audio(x)
        self._analyse(f.first_frame, f.onset_prob, f.velocity, flush=False)
        self.samples_in += n
        stems = None if self.voices is None else self.voices.read(n)
        if stems is not None and self.wiener is not None:
            stems = self._render_masked(x, stems)
        events = self._due(self.samples_out + n)
        self.samples_out += n
        return events, stems

    def process(self, block: np.ndarray) -> ProcessedBlock:
        """Feed mono float32 samples at :attr:`sample_rate` (any length); returns as many output samples."""
        if self._flushed:
            raise RuntimeError("process() after flush(): call reset() to start a new stream")
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if x.shape[0]:  # finite iff its min and max are (NaN propagates, inf is the max or the min): no temporary
            np.minimum.reduce(x, out=self._lo)
            np.maximum.reduce(x, out=self._hi)
            if not (math.isfinite(float(self._lo)) and math.isfinite(float(self._hi))):
                bad = int(np.flatnonzero(~np.isfinite(x))[0])
                raise AudioInputError(f"non-finite sample at input sample {self.samples_in + bad}")
        start = self.samples_out
        if x.shape[0] <= self._max_block:
            events, stems = self._process_chunk(x)
            return ProcessedBlock(start, events, stems)
        all_events: list[NoteEvent] = []
        parts: list[np.ndarray] = []
        for a in range(0, x.shape[0], self._max_block):
            ev, st = self._process_chunk(x[a : a + self._max_block])
            all_events += ev
            if st is not None:
                parts.append(st.copy())
        return ProcessedBlock(start, all_events, np.concatenate(parts, axis=1) if parts else None)

    def flush(self) -> ProcessedBlock:
        """End of input: the remaining ``latency`` output samples and every remaining event.

        Events of frames past the end of the input (the model's extra frames) are included, even when due
        after the last output sample.
        """
        if self._flushed:
            raise RuntimeError("flush() called twice: call reset() to start a new stream")
        if self.samples_in == 0:
            raise AudioInputError("no audio was processed")
        f = self.encoder.flush()
        self._analyse(f.first_frame, f.onset_prob, f.velocity, flush=True)
        self._flushed = True
        start = self.samples_out
        n_total = self.samples_in + self.latency
        parts: list[np.ndarray] = []
        if self.voices is not None:
            if self.wiener is None or self._mix_delay is None:
                while self.samples_out < n_total:
                    m = min(self._max_block, n_total - self.samples_out)
                    parts.append(self.voices.read(m).copy())
                    self.samples_out += m
            else:
                end_synth = self.samples_in + self.detect_latency  # synthesized stems exist up to the input's end
                while self.samples_out < end_synth:
                    m = min(self._max_block, end_synth - self.samples_out)
                    synth = self.voices.read(m)
                    parts.append(self._render_masked(np.zeros(m, np.float32), synth).copy())
                    self.samples_out += m
                if self.samples_in > self.wiener.half:
                    tail = self.wiener.flush()
                else:
                    tail = np.zeros((len(self.class_names), self.wiener.delay), np.float32)
                parts.append(tail[:, : n_total - self.samples_out])
                self.samples_out = n_total
        else:
            self.samples_out = n_total
        events = self._due(None)
        stems = np.concatenate(parts, axis=1) if parts else None
        return ProcessedBlock(start, events, stems)
