"""Whole-file separation on an ONNX bundle, without torch: the stems and MIDI that streaming the file gives.

Two passes over the file, reading it in blocks (memory does not grow with its length). The first
(:mod:`~idm.runtime.offline_analysis`) runs the front end and the streaming encoder graph over parallel
segments and keeps every frame's onset probability and velocity; the picker decides the hits and the
synthesizer makes one bank from the whole clip's kit embedding. The second (:mod:`~idm.runtime.offline_render`)
renders the stems in independent blocks on worker threads: the same one-shots at the same samples and the same
Wiener masks as :class:`~idm.runtime.engine.processor.StreamProcessor`, so the result equals ``idm-live --input FILE``
(frozen at the clip's kit). Stereo input keeps stereo masked stems: the masks come from the stems of the mono
downmix and apply to each channel; synthesized stems are mono.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from idm.runtime.activations_out import Activations
from idm.runtime.engine.bank import BankSynth
from idm.runtime.engine.bundle import Bundle, load_bundle
from idm.runtime.engine.peaks import PickerParams, StreamingPeakPicker
from idm.runtime.engine.providers import PendingSession, resolve_providers
from idm.runtime.engine.replace import REPLACE_MODES, ReplacementKit, SampleSequencer
from idm.runtime.extras import ExtraOutputs, ExtrasWriter
from idm.runtime.offline_analysis import analyse_clip
from idm.runtime.offline_render import BlockRenderer
from idm.runtime.outputs import OutputFolder
from idm.runtime.prepass import ClipAnalysis
from idm.runtime.segment_encoder import SegmentEncoder
from idm.runtime.sequencer import HitSequencer
from idm.runtime.sources import ArraySource, FileSource, Resampler
from idm.runtime.stems_writer import StemsWriter

from idm.classes import CLASSES, GROUPS, group_sum
from idm.errors import ConfigError, IDMError, OutputError
from idm.midi import MidiStyle, Onset, to_midi_velocity, write_midi

__all__ = ["OfflineConfig", "OfflineResult", "OfflineSeparator"]

#: ``progress(stage, done, total)``: stage "analysing" or "rendering", input frames done of total.
Progress = Callable[[str, int, int], None]

#: Frames given to the peak picker per call.
PICK_BLOCK = 8192


@dataclass
class OfflineConfig:
    """Options of an :class:`OfflineSeparator` (``delta``/``threshold``: a number, or per class name)."""

    mode: str = "masked"  #: "masked" (alpha-Wiener on the mix, sums to it), "synth" (one-shots) or "none" (MIDI only)
    stems: int = 9  #: 9 classes or 5 groups
    alpha: float = 1.0
    provider: str = "cpu"
    threads: int = 1  #: worker threads (encoder segments, render blocks) and the synthesizer's intra-op threads
    delta: float | dict[str, float] | None = None
    threshold: float | dict[str, float] | None = None
    wait_ms: float | None = None
    subtype: str = "FLOAT"  #: sample format of the stems (soundfile subtype)
    extension: str = "wav"  #: file type of the stems: wav or flac
    extras: ExtraOutputs = field(default_factory=ExtraOutputs)  #: note events, activations, sonification
    midi: MidiStyle = field(default_factory=MidiStyle)  #: note length, channel, note map and tempo of the MIDI file
    replace: ReplacementKit | None = None  #: drum replacement: also write replaced.wav and replaced_<drum>.wav
    replace_mode: str = "swap"  #: swap, add or solo (:mod:`idm.runtime.engine.replace`)
    #: drum replacement: each sample starts at its hit's transient in the input (sample-accurate; offline only:
    #: :mod:`idm.runtime.engine.align`) instead of the hit's frame (as ``idm-live`` plays it)
    replace_align: bool = False
    kit_from: str | Path | None = None  #: kit transfer: a recording (its inferred kit) or a sample kit (name or path)

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
        if self.replace_mode not in REPLACE_MODES:
            raise ConfigError(f"replace mode must be one of {', '.join(REPLACE_MODES)}, got {self.replace_mode!r}")
        if self.replace is not None and self.mode == "none":
            raise ConfigError("--replace writes audio: use --mode masked (default) or synth, not none")
        if self.replace is not None and self.replace_mode == "swap" and self.mode != "masked":
            raise ConfigError("--replace-mode swap takes the named drums out of the mix with their masked stems: "
                              "use --mode masked")  # fmt: skip


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
        # one intra-op thread per concurrent segment; no arena, so the peak of large calls is handed back.
        # Both sessions are created on background threads while the caller goes on (imports, reading the input)
        session = PendingSession(str(self.bundle.encoder_path), 1, providers, arena=False, spinning=False)
        synth = PendingSession(str(self.bundle.synth_path), cfg.threads, providers, arena=False, spinning=False)
        self.encoder = SegmentEncoder(self.bundle, session, cfg.threads)
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
        self.transfer: ClipAnalysis | ReplacementKit | None = None
        if cfg.kit_from is not None:
            self.transfer = self.load_kit_from(cfg.kit_from)

    # ---- kit transfer -----------------------------------------------------------------------------------

    def load_kit_from(self, ref: str | Path) -> ClipAnalysis | ReplacementKit:
        """What ``--kit-from`` names: an audio file (its kit embedding and gains, as this model infers them from
        it), else a sample kit (a registered name, Hydrogen kit, ``.sf2`` or folder of one-shots per class)."""
        from idm.data.kits import AUDIO_SUFFIXES

        p = Path(ref).expanduser()
        if p.suffix.lower() in AUDIO_SUFFIXES or (p.is_file() and p.suffix.lower() != ".sf2"):
            try:
                source = FileSource(p)
                try:
                    return self.analyse(source)
                finally:
                    source.close()
            except IDMError as e:
                raise type(e)(f"--kit-from {e}") from None
        from idm.runtime.replace_kit import load_replacement

        try:
            return load_replacement(str(ref), self.sample_rate)
        except IDMError as e:
            raise IDMError(str(e).replace("--replace", "--kit-from", 1)) from None

    def transfer_tracks(self, a: ClipAnalysis, ks: np.ndarray, js: np.ndarray) -> HitSequencer | SampleSequencer:
        """The performance ``(ks, js)`` of clip ``a`` re-synthesized with the transfer kit: per class tracks on
        demand (``.render(s0, s1)`` -> ``[K, s1 - s0]`` at the model rate, hits at the input's samples)."""
        assert self.transfer is not None and a.velocity is not None
        t = self.transfer
        if isinstance(t, ReplacementKit):
            return self._sample_tracks(t, a, ks, js)
        bank = self.synth(t.kit_embedding)
        amps = a.velocity[ks, js].astype(np.float32) * np.asarray(t.gains, dtype=np.float32)[ks]
        return HitSequencer(bank, ks, js * self.hop, amps)

    def _sample_tracks(
        self,
        kit: ReplacementKit,
        a: ClipAnalysis,
        ks: np.ndarray,
        js: np.ndarray,
        align_on: FileSource | ArraySource | None = None,
    ) -> SampleSequencer:
        """``kit``'s samples at the hits ``(ks, js)`` with their MIDI velocities (as the MIDI file has them); with
        ``align_on`` each sample starts at its hit's transient in that input instead of the hit's frame."""
        vel = self._midi_velocities(a, ks, js)
        starts = js * self.hop
        if align_on is not None and ks.size:
            from idm.runtime.engine.align import AlignConfig, align_starts, gather_windows

            cfg = AlignConfig()
            keep = np.flatnonzero(kit.named[ks])
            windows = gather_windows(self._mono_blocks(align_on), starts[keep], cfg)
            starts = starts.copy()
            starts[keep] = align_starts(windows, starts[keep],
                                        lambda i: kit.sample(int(ks[keep[i]]), int(vel[keep[i]]))[0], cfg)  # fmt: skip
        return SampleSequencer(kit, ks, starts, vel)

    def _mono_blocks(self, source: FileSource | ArraySource) -> Iterable[np.ndarray]:
        """``source`` (rewound first) downmixed as the analysis reads it, at the model rate, block by block."""
        from idm.runtime.offline_render import RENDER_BLOCK

        rs = Resampler(source.sample_rate, self.sample_rate)
        source.rewind()
        last = False
        while not last:
            x = source.read(RENDER_BLOCK)
            last = source.finished or x.size == 0
            yield rs(x, last=last)

    def _midi_velocities(self, a: ClipAnalysis, ks: np.ndarray, js: np.ndarray) -> np.ndarray:
        assert a.velocity is not None
        return to_midi_velocity(a.velocity[ks, js]) if ks.size else np.zeros(0, np.int64)

    def _write_transfer(self, source: FileSource, a: ClipAnalysis, ks: np.ndarray, js: np.ndarray,
                        folder: Path) -> None:  # fmt: skip
        """``transferred.wav`` (the mix) and ``transferred_<stem>.wav`` (per class or group) at the input's rate."""
        from idm.runtime.offline_render import RENDER_BLOCK

        cfg = self.config
        seq = self.transfer_tracks(a, ks, js)
        names = CLASSES if cfg.stems == 9 else GROUPS
        files = ("transferred", *[f"transferred_{n}" for n in names])
        writer = StemsWriter(folder, 9, self.sample_rate, source.sample_rate, 0, subtype=cfg.subtype,
                             extension=cfg.extension, names=files)  # fmt: skip
        try:
            for s0 in range(0, a.n_model_samples, RENDER_BLOCK):
                tracks = seq.render(s0, min(a.n_model_samples, s0 + RENDER_BLOCK))
                if cfg.stems == 5:
                    tracks = group_sum(tracks)
                out = np.concatenate([tracks.sum(axis=0, keepdims=True), tracks])
                writer.write(s0, out)
            writer.close(a.n_samples)
        finally:
            writer.close()

    # ---- analysis ---------------------------------------------------------------------------------------

    def analyse(self, source: FileSource | ArraySource, progress: Callable[[int], None] | None = None) -> ClipAnalysis:
        """Every frame's onset probability and velocity, the clip's kit embedding and gains (source rewound)."""
        return analyse_clip(self.bundle, source, self.encoder, progress)

    def hits(self, analysis: ClipAnalysis) -> tuple[np.ndarray, np.ndarray]:
        """Picked hits as (class index, frame) arrays, in the order the streaming picker emits them."""
        assert analysis.onset_prob is not None
        picker = StreamingPeakPicker(self.picker_params, len(self.class_names))
        probs = analysis.onset_prob
        found = [picker.process(probs[:, a : a + PICK_BLOCK]) for a in range(0, probs.shape[1], PICK_BLOCK)]
        found.append(picker.flush())  # in blocks: the picker's windowed temporaries stay small for any length
        ks = np.concatenate([k for k, _ in found])
        js = np.concatenate([j for _, j in found])
        order = np.argsort(js, kind="stable")
        return ks[order], js[order]

    def onsets(self, analysis: ClipAnalysis, ks: np.ndarray, js: np.ndarray) -> list[Onset]:
        """The hits as MIDI onsets (seconds from the start of the input, MIDI velocity)."""
        assert analysis.onset_prob is not None
        vel = self._midi_velocities(analysis, ks, js)
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

    def renderer(self, a: ClipAnalysis, ks: np.ndarray, js: np.ndarray) -> BlockRenderer:
        """The second pass for hits ``(ks, js)``: one bank from the clip's kit, amplitudes velocity x gain."""
        assert a.velocity is not None
        bank = self.synth(a.kit_embedding)
        gains = np.asarray(a.gains, dtype=np.float32)
        amps = a.velocity[ks, js].astype(np.float32) * gains[ks]
        seq = HitSequencer(bank, ks, js * self.hop, amps)
        mode = "synth" if self.config.mode == "synth" else "masked"
        return BlockRenderer(seq, a.n_model_samples, self.sample_rate, mode, self.n_fft, self.hop, self.config.alpha,
                             self.config.threads)  # fmt: skip

    def _render(
        self,
        source: FileSource,
        a: ClipAnalysis,
        ks: np.ndarray,
        js: np.ndarray,
        folder: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """The stems as WAV (or FLAC) files in ``folder`` at the input's rate, length and (masked) channels; with
        ``config.replace`` also the replaced mix and each replaced drum's sample track."""
        cfg = self.config
        channels = source.channels if cfg.mode == "masked" else 1
        writer = StemsWriter(folder, cfg.stems, self.sample_rate, source.sample_rate, 0, subtype=cfg.subtype,
                             extension=cfg.extension, channels=channels)  # fmt: skip
        replaced = None
        renderer = self.renderer(a, ks, js)
        if cfg.replace is not None:
            kit = cfg.replace
            seq = self._sample_tracks(kit, a, ks, js, source if cfg.replace_align else None)
            named = [k for k in range(len(CLASSES)) if kit.named[k]]
            names = ("replaced", *[f"replaced_{CLASSES[k]}" for k in named])
            replaced = StemsWriter(folder, 9, self.sample_rate, source.sample_rate, 0, subtype=cfg.subtype,
                                   extension=cfg.extension, channels=channels, names=names)  # fmt: skip
            taken = kit.named.astype(np.float32)
        try:
            need_input = replaced is not None and cfg.replace_mode != "solo"
            blocks: Iterable[tuple[int, np.ndarray, np.ndarray | None]] = (
                renderer.blocks_with_input(source)
                if need_input
                else ((b, st, None) for b, st in renderer.blocks(source))
            )
            for start, stems, x in blocks:
                writer.write(start, stems)
                if replaced is not None:
                    m = stems.shape[-1]
                    tracks = seq.render(start, start + m)  # [K, m] mono
                    total = tracks.sum(axis=0)
                    if cfg.replace_mode == "solo":
                        mix = np.broadcast_to(total, (channels, m))
                    else:
                        assert x is not None
                        mix = (x.mean(axis=0, keepdims=True) if channels == 1 else x) + total
                        if cfg.replace_mode == "swap":
                            mix = mix - np.einsum("k,kcm->cm", taken, stems)
                    out = np.empty((len(names), channels, m), dtype=np.float32)
                    out[0] = mix
                    for i, k in enumerate(named):
                        out[1 + i] = tracks[k]
                    replaced.write(start, out)
                if progress is not None:
                    progress(min(source.position, a.n_samples))
            writer.close(a.n_samples)
            if replaced is not None:
                replaced.close(a.n_samples)
        finally:
            writer.close()
            if replaced is not None:
                replaced.close()

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
        blocks = [b[:, 0] for _, b in self.renderer(a, ks, js).blocks(source)]
        stems = np.concatenate(blocks, axis=1)
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
                if self.transfer is not None:
                    self._write_transfer(source, a, ks, js, folder.path)
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
