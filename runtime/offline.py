"""Whole-file separation on an ONNX bundle, without torch: the stems and MIDI that streaming the file gives.

Two passes over the file, in bounded memory: the encoder runs over large blocks (one onnxruntime call per
~1.5 s of audio) and keeps every frame's onset probability and velocity; the picker decides the hits, the
synthesizer makes one bank from the whole clip's kit embedding; the second pass renders the stems block
by block with the same voice engine and Wiener masking as :class:`~idm.runtime.engine.processor.StreamProcessor`,
so the result equals ``idm-live --input FILE`` (frozen at the clip's kit), with no per-block work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from idm.runtime.activations_out import Activations
from idm.runtime.engine.bank import BankSynth
from idm.runtime.engine.bundle import Bundle, load_bundle
from idm.runtime.engine.encoder import StreamingEncoder
from idm.runtime.engine.peaks import PickerParams, StreamingPeakPicker
from idm.runtime.engine.providers import make_session, resolve_providers
from idm.runtime.engine.voices import VoiceEngine
from idm.runtime.engine.wiener import StreamingWiener
from idm.runtime.extras import ExtraOutputs, ExtrasWriter
from idm.runtime.outputs import OutputFolder
from idm.runtime.prepass import ClipAnalysis, analyse_file
from idm.runtime.sources import ArraySource, FileSource, Resampler
from idm.runtime.stems_writer import StemsWriter

from idm.classes import CLASSES
from idm.errors import ConfigError, OutputError
from idm.midi import MidiStyle, Onset, to_midi_velocity, write_midi

__all__ = ["OfflineConfig", "OfflineResult", "OfflineSeparator"]

#: ``progress(stage, done, total)``: stage "analysing" or "rendering", input frames done of total.
Progress = Callable[[str, int, int], None]

#: Samples read per block (at the file's rate): the analysis pass (one encoder call each) and the render pass.
BLOCK = 1 << 16
RENDER_BLOCK = 1 << 14


@dataclass
class OfflineConfig:
    """Options of an :class:`OfflineSeparator` (``delta``/``threshold``: a number, or per class name)."""

    mode: str = "masked"  #: "masked" (alpha-Wiener on the mix, sums to it), "synth" (one-shots) or "none" (MIDI only)
    stems: int = 9  #: 9 classes or 5 groups
    alpha: float = 1.0
    provider: str = "cpu"
    threads: int = 1
    delta: float | dict[str, float] | None = None
    threshold: float | dict[str, float] | None = None
    wait_ms: float | None = None
    subtype: str = "FLOAT"  #: sample format of the stems (soundfile subtype)
    extension: str = "wav"  #: file type of the stems: wav or flac
    extras: ExtraOutputs = field(default_factory=ExtraOutputs)  #: note events, activations, sonification
    midi: MidiStyle = field(default_factory=MidiStyle)  #: note length, channel, note map and tempo of the MIDI file

    def __post_init__(self) -> None:
        if self.mode not in ("masked", "synth", "none"):
            raise ConfigError(f"mode must be masked, synth or none, got {self.mode!r}")
        if self.stems not in (5, 9):
            raise ConfigError(f"stems must be 9 or 5, got {self.stems}")
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be positive, got {self.alpha}")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.extension not in ("wav", "flac"):
            raise ConfigError(f"extension must be wav or flac, got {self.extension!r}")


@dataclass
class OfflineResult:
    """What :meth:`OfflineSeparator.separate_file` wrote and found."""

    folder: Path
    onsets: list[Onset]
    analysis: ClipAnalysis


class OfflineSeparator:
    """A bundle's encoder, picker and synthesizer, run over whole files.

    Parameters
    ----------
    bundle
        A bundle folder (hashes verified) or a loaded :class:`Bundle`.
    config
        Options.
    """

    def __init__(self, bundle: Bundle | str | Path, config: OfflineConfig | None = None) -> None:
        self.config = cfg = config or OfflineConfig()
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        m = self.bundle.manifest
        providers = resolve_providers(cfg.provider)
        self.encoder = StreamingEncoder(self.bundle, cfg.threads, providers)
        synth = make_session(str(self.bundle.synth_path), cfg.threads, providers, arena=False)
        self.synth = BankSynth(synth, self.bundle.noise())
        self.class_names = tuple(self.bundle.class_names)
        self.notes = np.asarray(self.bundle.gm_notes, dtype=np.int64)
        self.sample_rate = int(m["audio"]["sample_rate"])
        self.hop = int(m["frontend"]["hop"])
        self.n_fft = int(m["frontend"]["n_fft"])
        wait = None if cfg.wait_ms is None else round(cfg.wait_ms / 1000 * self.sample_rate / self.hop)
        self.picker_params = PickerParams.from_manifest(
            m["peak_picking"], list(self.class_names), cfg.delta, cfg.threshold, wait
        )
        self.extras = ExtrasWriter(cfg.extras)

    # ---- analysis ---------------------------------------------------------------------------------------

    def analyse(self, source: FileSource | ArraySource, progress: Callable[[int], None] | None = None) -> ClipAnalysis:
        """Every frame's onset probability and velocity, the clip's kit embedding and gains (source rewound)."""
        return analyse_file(self.bundle, source, BLOCK, self.config.threads, encoder=self.encoder, collect=True,
                            progress=progress)  # fmt: skip

    def hits(self, analysis: ClipAnalysis) -> tuple[np.ndarray, np.ndarray]:
        """Picked hits as (class index, frame) arrays, in the order the streaming picker emits them."""
        assert analysis.onset_prob is not None
        picker = StreamingPeakPicker(self.picker_params, len(self.class_names))
        k1, j1 = picker.process(analysis.onset_prob)
        k2, j2 = picker.flush()
        ks, js = np.concatenate([k1, k2]), np.concatenate([j1, j2])
        order = np.argsort(js, kind="stable")
        return ks[order], js[order]

    def onsets(self, analysis: ClipAnalysis, ks: np.ndarray, js: np.ndarray) -> list[Onset]:
        """The hits as MIDI onsets (seconds from the start of the input, MIDI velocity)."""
        assert analysis.velocity is not None and analysis.onset_prob is not None
        vel = to_midi_velocity(analysis.velocity[ks, js]) if ks.size else np.zeros(0, np.int64)
        prob = analysis.onset_prob[ks, js] if ks.size else np.zeros(0, np.float32)
        return [Onset(CLASSES[int(k)], float(j * self.hop / self.sample_rate), int(v), float(p))
                for k, j, v, p in zip(ks, js, vel, prob, strict=True)]  # fmt: skip

    def activations(self, analysis: ClipAnalysis) -> Activations:
        """The onset probabilities, velocities and picker settings of a clip (``--save-activations``)."""
        assert analysis.onset_prob is not None
        p = self.picker_params
        return Activations(analysis.onset_prob, self.sample_rate / self.hop, self.class_names, p.delta, p.threshold,
                           analysis.velocity)  # fmt: skip

    # ---- rendering --------------------------------------------------------------------------------------

    def _blocks(
        self, source: FileSource | ArraySource, a: ClipAnalysis, ks: np.ndarray, js: np.ndarray
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Second pass: ``(start, stems [K, m])`` blocks at the model rate, :attr:`stem_delay` samples late.

        The voice engine and Wiener of the stream path, fed large blocks; the last block is the Wiener's flush.
        """
        cfg = self.config
        assert a.velocity is not None
        k = len(self.class_names)
        bank = self.synth(a.kit_embedding)
        gains = np.asarray(a.gains, dtype=np.float32)
        starts = js * self.hop
        amps = [float(np.float32(a.velocity[kk, jj]) * gains[kk]) for kk, jj in zip(ks, js, strict=True)]
        rs = Resampler(source.sample_rate, self.sample_rate)
        max_block = 2 * RENDER_BLOCK * max(1, -(-self.sample_rate // source.sample_rate)) + 64
        voices = VoiceEngine(k, self.synth.length, max_block)
        wiener = StreamingWiener(k, self.n_fft, self.hop, cfg.alpha) if cfg.mode == "masked" else None
        source.rewind()
        pos = 0  # model-rate samples rendered
        nxt = 0  # next hit to trigger
        n_model = a.n_model_samples
        while pos < n_model:
            x = source.read(RENDER_BLOCK)
            last = source.finished or x.size == 0
            y = rs(x, last=last)[: n_model - pos]
            m = y.shape[0]
            while nxt < len(starts) and starts[nxt] < pos + m:
                kk, s = int(ks[nxt]), int(starts[nxt])
                if s >= pos:
                    voices.trigger(kk, s, bank[kk], amps[nxt])
                nxt += 1
            synth = voices.read(m)
            yield pos, synth if wiener is None else wiener.process(y, synth)
            pos += m
            if last:
                break
        if wiener is not None:
            yield pos, wiener.flush()

    @property
    def stem_delay(self) -> int:
        """Samples by which :meth:`_blocks` lags the input (one FFT window for masked stems)."""
        return self.n_fft if self.config.mode == "masked" else 0

    def _render(
        self,
        source: FileSource,
        a: ClipAnalysis,
        ks: np.ndarray,
        js: np.ndarray,
        folder: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """The stems as WAV (or FLAC) files in ``folder`` at the input's rate and length."""
        cfg = self.config
        writer = StemsWriter(folder, cfg.stems, self.sample_rate, source.sample_rate, self.stem_delay,
                             subtype=cfg.subtype, extension=cfg.extension)  # fmt: skip
        try:
            for start, stems in self._blocks(source, a, ks, js):
                writer.write(start, stems)
                if progress is not None:
                    progress(min(source.position, a.n_samples))
            writer.close(a.n_samples)
        finally:
            writer.close()

    def separate_array(
        self, audio: np.ndarray, sample_rate: int
    ) -> tuple[list[Onset], np.ndarray | None, ClipAnalysis, np.ndarray, np.ndarray]:
        """In memory: onsets, stems ``[K, n]`` at ``sample_rate`` (None for mode none), the analysis, hits.

        ``audio`` is ``[n]`` or ``[n, channels]`` (downmixed). Same results as :meth:`separate_file`.
        """
        source = ArraySource(audio, sample_rate)
        a = self.analyse(source)
        ks, js = self.hits(a)
        onsets = self.onsets(a, ks, js)
        if self.config.mode == "none":
            return onsets, None, a, ks, js
        blocks = [b for _, b in self._blocks(source, a, ks, js)]
        stems = np.concatenate(blocks, axis=1)[:, self.stem_delay : self.stem_delay + a.n_model_samples]
        if sample_rate != self.sample_rate:
            import soxr

            stems = soxr.resample(stems.T, self.sample_rate, sample_rate, quality="VHQ").T
        out = np.zeros((stems.shape[0], a.n_samples), dtype=np.float32)
        n = min(a.n_samples, stems.shape[1])
        out[:, :n] = stems[:, :n]
        return onsets, out, a, ks, js

    def separate_file(
        self, path: str | Path, out_dir: str | Path, force: bool = False, progress: Progress | None = None
    ) -> OfflineResult:
        """Write ``out_dir/<name>/`` (the stems as WAV at the input's rate, ``<name>.mid``) for one file.

        The folder appears only when complete; ``force`` replaces an existing one; the optional files of
        ``config.extras`` go beside the MIDI file; ``progress(stage, done, total)`` follows the two passes.
        Raises :class:`~idm.errors.IDMError` subclasses with one-line messages.
        """
        path = Path(path)
        source = FileSource(path)
        try:
            folder = OutputFolder(out_dir, path.stem, force)
            try:
                total = source.frames or 0
                a = self.analyse(source, None if progress is None else lambda n: progress("analysing", n, total))
                ks, js = self.hits(a)
                onsets = self.onsets(a, ks, js)
                if self.config.mode != "none":
                    self._render(source, a, ks, js, folder.path,
                                 None if progress is None else lambda n: progress("rendering", n, total))  # fmt: skip
                midi = folder.path / f"{path.stem}.mid"
                try:
                    write_midi(onsets, midi, style=self.config.midi)
                except OSError as e:
                    raise OutputError(f"{midi}: cannot write the MIDI file ({e.strerror or e})") from None
                self.extras.write(midi.with_suffix(""), onsets, self.config.midi, a.n_samples, source.sample_rate,
                                  lambda: self.activations(a), path.name)  # fmt: skip
                target = folder.commit()
            except BaseException:
                folder.discard()
                raise
        finally:
            source.close()
        return OfflineResult(target, onsets, a)
