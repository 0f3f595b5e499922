"""Offline separation: ``Separator`` turns a drum mix into stems, onsets and MIDI, in bounded memory.

Long inputs are analysed in overlapping chunks whose margins cover the encoder's receptive field,
so chunked results equal whole-clip ones; stems are rendered chunk by chunk and can be streamed to
files. One one-shot bank is synthesized per input (its kit embedding), from seeded noise.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from idm.audio import check_audio, read_audio, resample
from idm.classes import CLASSES, GM_TO_CLASS, GROUP_OF, GROUPS, class_permutation
from idm.errors import AudioInputError, OutputError
from idm.files import replace_dir
from idm.midi import MidiStyle, Onset, read_onsets, to_midi_velocity, write_midi
from idm.model import InverseDrumMachine
from idm.model.wiener import wiener_separate
from idm.peaks import PeakPicking, peak_pick
from idm.runtime.activations_out import Activations
from idm.runtime.extras import ExtraOutputs, ExtrasWriter

__all__ = ["Analysis", "SeparationResult", "Separator", "SeparatorConfig"]

#: Encoder frames of context kept on each side of a chunk (the official receptive field is ~70 left, 57 right).
CHUNK_MARGIN = 128


@dataclass
class SeparatorConfig:
    """Options of a separation run."""

    mode: str = "masked"  #: "masked" (alpha-Wiener on the mix) or "synth" (re-sequenced one-shots)
    alpha: float = 1.0  #: Wiener exponent
    seed: int = 1234  #: seed of the synthesizer's noise (1234 reproduces the official bank)
    device: str = "cpu"
    chunk_seconds: float = 30.0  #: analysis/render chunk length (bounds memory)
    stems: int = 9  #: 9 classes or 5 groups
    peaks: PeakPicking | None = None  #: peak picking; None = the model's own (``IDMConfig.peaks``)
    wav_subtype: str = "FLOAT"  #: sample format of the stems (soundfile subtype)
    extension: str = "wav"  #: file type of the stems: wav or flac
    extras: ExtraOutputs = field(default_factory=ExtraOutputs)  #: note events, activations, sonification
    midi: MidiStyle = field(default_factory=MidiStyle)  #: note length, channel, note map and tempo of the MIDI file

    def __post_init__(self) -> None:
        if self.mode not in ("masked", "synth"):
            raise ValueError(f"mode must be 'masked' or 'synth', got {self.mode!r}")
        if self.stems not in (5, 9):
            raise ValueError(f"stems must be 9 or 5, got {self.stems}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        if not self.chunk_seconds >= 1.0:
            raise ValueError(f"chunk_seconds must be at least 1, got {self.chunk_seconds}")
        if self.extension not in ("wav", "flac"):
            raise ValueError(f"extension must be wav or flac, got {self.extension!r}")


@dataclass
class Analysis:
    """Encoder results for one clip at the model rate; class axes in project order."""

    onset_probs: np.ndarray  # [K, F]
    velocity: np.ndarray  # [K, F]
    kit_embedding: np.ndarray  # [n_kits]
    gains: np.ndarray  # [K]
    n_samples: int
    frame_rate: float

    def activations(self, peaks: np.ndarray) -> np.ndarray:
        """Sequencer input ``[K, F]``: picked onsets times velocity."""
        return np.where(peaks, self.velocity, 0.0).astype(np.float32)


@dataclass
class SeparationResult:
    """Stems (project class order or the 5 groups), onsets and the analysis behind them."""

    stems: np.ndarray  # [S, N] at ``sample_rate``
    names: tuple[str, ...]
    sample_rate: int
    onsets: list[Onset]
    analysis: Analysis
    one_shots: np.ndarray  # [K, L] at the model rate, project order

    def write_midi(self, path: str | Path) -> None:
        write_midi(self.onsets, path)


class Separator:
    """Construct once from a model (or :meth:`from_checkpoint`), then separate arrays or files."""

    def __init__(self, model: InverseDrumMachine, config: SeparatorConfig | None = None) -> None:
        self.config = config or SeparatorConfig()
        self.device = torch.device(self.config.device)
        self.model = model.eval().to(self.device)
        self._perm = class_permutation(model.config.classes)  # model order -> project order
        self.sample_rate = model.config.frontend.sample_rate
        self.hop = model.config.frontend.hop
        self._banks: dict[tuple[int, bytes], np.ndarray] = {}
        self.extras = ExtrasWriter(self.config.extras)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, config: SeparatorConfig | None = None, model_config: str | Path | None = None
    ) -> Separator:
        from idm.checkpoint import load_model

        return cls(load_model(path, model_config), config)

    @classmethod
    def from_pretrained(cls, name: str = "live", config: SeparatorConfig | None = None) -> Separator:
        """A shipped model by name (``live``, ``paper``; see ``idm models``)."""
        from idm.models import resolve_checkpoint

        return cls.from_checkpoint(resolve_checkpoint(name), config)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    # ---- analysis --------------------------------------------------------------------------------

    @torch.inference_mode()
    def analyze(self, audio: np.ndarray, progress: Callable[[int, int], None] | None = None) -> Analysis:
        """Chunked encoder pass over mono audio at the model rate; equal to a whole-clip pass.

        ``progress(done, total)`` is called after each chunk with encoder frames done of total.
        """
        m = self.model
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        padded = m.frontend.pad(x)
        n_fft, hop = m.config.frontend.n_fft, self.hop
        n_in = (padded.shape[-1] - n_fft) // hop + 1  # log-mel frames
        n_out = n_in + m.encoder.extra_frames
        step = max(1, int(self.config.chunk_seconds * self.frame_rate))
        logits, vel = [], []
        kit_sum = torch.zeros(m.config.encoder.dims[-1], device=self.device)
        feat_sum = torch.zeros_like(kit_sum)
        for a in range(0, n_out, step):
            b = min(a + step, n_out)
            lo, hi = max(0, a - CHUNK_MARGIN), min(n_in, b + CHUNK_MARGIN)
            seg = padded[lo * hop : (hi - 1) * hop + n_fft]
            full = m.encoder(m.frontend.from_padded(seg[None]))
            on, ve = m.head(full)
            feats = full[:, a - lo : b - lo]
            on, ve = on[..., a - lo : b - lo], ve[..., a - lo : b - lo]
            logits.append(on[0])
            vel.append(ve[0])
            kit_sum += m.kit.pool(feats)[0].sum(0)
            feat_sum += feats[0].sum(0)
            if progress is not None:
                progress(b, n_out)
        onset_logits = torch.cat(logits, -1)
        kit = m.kit.from_mean(kit_sum / n_out).softmax(-1)
        gains = m.gains.from_mean(feat_sum / n_out)
        probs = torch.sigmoid(onset_logits)
        p = self._perm
        return Analysis(
            onset_probs=probs.cpu().numpy()[p],
            velocity=torch.cat(vel, -1).cpu().numpy()[p],
            kit_embedding=kit.cpu().numpy(),
            gains=gains.cpu().numpy()[p],
            n_samples=int(audio.shape[-1]),
            frame_rate=self.frame_rate,
        )

    # ---- synthesis and rendering ------------------------------------------------------------------

    @torch.inference_mode()
    def one_shots(self, kit_embedding: np.ndarray) -> np.ndarray:
        """One bank ``[K, L]`` (project order) for a kit embedding, from the configured seed.

        Banks are kept per (seed, kit embedding): files that share a kit reuse one synthesis.
        """
        key = (self.config.seed, np.asarray(kit_embedding, dtype=np.float32).tobytes())
        if key not in self._banks:
            m = self.model
            noise = m.noise(self.config.seed).to(self.device)
            shots, _ = m.synthesize(torch.from_numpy(kit_embedding).to(self.device), noise)
            if len(self._banks) >= 8:
                self._banks.pop(next(iter(self._banks)))
            self._banks[key] = shots.cpu().numpy()[self._perm]
        return self._banks[key]

    def peaks_from_onsets(self, onsets: list[Onset], n_frames: int) -> np.ndarray:
        """User-given onsets -> boolean ``[K, F]`` on the model's frame grid (the "+onsets" mode)."""
        out = np.zeros((len(CLASSES), n_frames), dtype=bool)
        for o in onsets:
            j = round(o.time * self.frame_rate)
            if 0 <= j < n_frames:
                out[CLASSES.index(o.cls), j] = True
        return out

    def render(
        self, audio: np.ndarray, analysis: Analysis, activations: np.ndarray, one_shots: np.ndarray
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, stems [K, n])`` chunks covering the clip, at the model rate, project order."""
        n, hop = analysis.n_samples, self.hop
        step = max(hop, int(self.config.chunk_seconds * self.sample_rate) // hop * hop)
        margin = self.model.config.frontend.n_fft if self.config.mode == "masked" else 0
        mix = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        for s0 in range(0, n, step):
            s1 = min(s0 + step, n)
            e0, e1 = max(0, s0 - margin), min(n, s1 + margin)
            stems = self._synth_segment(activations, one_shots, analysis.gains, e0, e1)
            if self.config.mode == "masked":
                n_fft = self.model.config.frontend.n_fft
                with torch.inference_mode():
                    masked = wiener_separate(
                        mix[e0:e1], torch.from_numpy(stems).to(self.device), self.config.alpha, n_fft, hop
                    )
                stems = masked.cpu().numpy()
            yield s0, stems[:, s0 - e0 : s1 - e0]

    def _synth_segment(self, act: np.ndarray, shots: np.ndarray, gains: np.ndarray, e0: int, e1: int) -> np.ndarray:
        """Synthesized stems for samples ``[e0, e1)`` by overlap-adding each hit's one-shot.

        Direct overlap-add (a loop over hits, each a vector add) is exact: silent where no one-shot
        sounds, so Wiener masks there are not driven by FFT round-off, and independent of chunking.
        """
        hop, length = self.hop, shots.shape[-1]
        out = np.zeros((act.shape[0], e1 - e0), dtype=np.float32)
        first = max(0, -(-(e0 - length + 1) // hop))
        last = min(act.shape[-1], (e1 - 1) // hop + 1)
        ks, js = np.nonzero(act[:, first:last])
        for k, j in zip(ks, js + first, strict=True):
            pos = j * hop
            a, b = max(pos, e0), min(pos + length, e1)
            out[k, a - e0 : b - e0] += (act[k, j] * gains[k]) * shots[k, a - pos : b - pos]
        return out

    # ---- front doors --------------------------------------------------------------------------------

    def _onsets(self, analysis: Analysis, peaks: np.ndarray) -> list[Onset]:
        ks, js = np.nonzero(peaks)
        vel = to_midi_velocity(analysis.velocity[ks, js])
        order = np.lexsort((ks, js))
        prob = analysis.onset_probs[ks, js]
        return [Onset(CLASSES[ks[i]], float(js[i] / self.frame_rate), int(vel[i]), float(prob[i])) for i in order]

    def activations(self, analysis: Analysis) -> Activations:
        """Onset probabilities, velocities and the picker's per-class delta and threshold (``--save-activations``)."""
        pp = self.config.peaks or self.model.config.peaks
        threshold = np.full(len(CLASSES), pp.threshold, dtype=np.float32)
        return Activations(analysis.onset_probs, analysis.frame_rate, CLASSES, pp.deltas(CLASSES), threshold,
                           analysis.velocity)  # fmt: skip

    def _prepare(
        self, audio: np.ndarray, user_onsets: list[Onset] | None, progress: Callable[[int, int], None] | None = None
    ) -> tuple[Analysis, np.ndarray, np.ndarray]:
        analysis = self.analyze(audio, progress)
        n_frames = analysis.onset_probs.shape[-1]
        if user_onsets is None:
            peaks = peak_pick(analysis.onset_probs, self.config.peaks or self.model.config.peaks)
        else:
            peaks = self.peaks_from_onsets(user_onsets, n_frames)
        return analysis, peaks, self.one_shots(analysis.kit_embedding)

    def _names(self) -> tuple[str, ...]:
        return CLASSES if self.config.stems == 9 else GROUPS

    def _group(self, stems: np.ndarray) -> np.ndarray:
        if self.config.stems == 9:
            return stems
        out = np.zeros((len(GROUPS), stems.shape[-1]), dtype=stems.dtype)
        for k, g in enumerate(GROUP_OF):
            out[GROUPS.index(g)] += stems[k]
        return out

    def separate(self, audio: np.ndarray, sample_rate: int, onsets: list[Onset] | None = None) -> SeparationResult:
        """Separate mono audio (any rate; resampled to the model rate and back) held in memory."""
        x = check_audio(np.asarray(audio, dtype=np.float32), "audio", sample_rate)
        x44 = resample(x, sample_rate, self.sample_rate)
        analysis, peaks, shots = self._prepare(x44, onsets)
        chunks = [c for _, c in self.render(x44, analysis, analysis.activations(peaks), shots)]
        stems = self._group(np.concatenate(chunks, axis=-1))
        if sample_rate != self.sample_rate:
            stems = _fit(resample(stems, self.sample_rate, sample_rate), x.shape[-1])
        return SeparationResult(stems, self._names(), sample_rate, self._onsets(analysis, peaks), analysis, shots)

    def separate_file(
        self,
        path: str | Path,
        out_dir: str | Path,
        onsets: str | Path | None = None,
        force: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
        extra: Callable[[Analysis, np.ndarray, Path], None] | None = None,
    ) -> Path:
        """Write ``out_dir/<name>/<stem>.wav`` and ``<name>.mid``; returns the folder.

        Stems are streamed to disk chunk by chunk at the input's sample rate. The folder appears only
        when complete; an existing one is replaced only with ``force``. The optional files of
        ``config.extras`` go beside the MIDI file; ``progress(stage, done, total)`` follows analysis and rendering;
        ``extra(analysis, peaks, folder)`` may add files (a piano roll) to the folder before it appears.
        """
        path = Path(path)
        target = Path(out_dir) / path.stem
        if target.exists() and not force:
            raise OutputError(f"{target}: output folder exists (use --force to replace it)")
        clip = read_audio(path, self.sample_rate)
        user = read_onsets(onsets) if onsets is not None else None
        if user is not None and not user:
            notes = ", ".join(str(n) for n in sorted(GM_TO_CLASS))
            raise AudioInputError(f"{onsets}: no drum notes found (expected GM drum notes: {notes})")
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".partial", dir=out_dir))
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot write output folder ({e.strerror or e})") from None
        try:
            ana = None if progress is None else lambda d, t: progress("analysing", d, t)
            analysis, peaks, shots = self._prepare(clip.samples, user, ana)
            self._write_stems(clip.samples, clip.source_rate, clip.n_source_samples, analysis, peaks, shots, tmp,
                              progress)  # fmt: skip
            found = self._onsets(analysis, peaks)
            if user is not None:  # the user's hits: no model probability belongs to them
                found = [Onset(o.cls, o.time, o.velocity) for o in found]
            midi = tmp / f"{path.stem}.mid"
            write_midi(found, midi, style=self.config.midi)
            self.extras.write(tmp / path.stem, found, self.config.midi, clip.n_source_samples, clip.source_rate,
                              lambda: self.activations(analysis), path.name)  # fmt: skip
            if extra is not None:
                extra(analysis, peaks, tmp)
            replace_dir(tmp, target)
        except OSError as e:
            raise OutputError(f"{target}: cannot write outputs ({e.strerror or e})") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _write_stems(
        self,
        x: np.ndarray,
        out_rate: int,
        out_len: int,
        analysis: Analysis,
        peaks: np.ndarray,
        shots: np.ndarray,
        folder: Path,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        import soxr

        names = self._names()
        ext, subtype = self.config.extension, self.config.wav_subtype
        files = [sf.SoundFile(str(folder / f"{nm}.{ext}"), "w", out_rate, 1, subtype=subtype) for nm in names]
        rs = None
        if out_rate != self.sample_rate:
            rs = soxr.ResampleStream(self.sample_rate, out_rate, len(names), dtype="float32", quality="VHQ")
        written = 0
        try:
            for s0, chunk in self.render(x, analysis, analysis.activations(peaks), shots):
                block = self._group(chunk)
                if rs is not None:
                    last = s0 + chunk.shape[-1] >= analysis.n_samples
                    block = rs.resample_chunk(np.ascontiguousarray(block.T), last=last).T
                block = block[:, : max(0, out_len - written)]
                for f, row in zip(files, block, strict=True):
                    f.write(row)
                written += block.shape[-1]
                if progress is not None:
                    progress("rendering", s0 + chunk.shape[-1], analysis.n_samples)
            if written < out_len:
                for f in files:
                    f.write(np.zeros(out_len - written, dtype=np.float32))
        finally:
            for f in files:
                f.close()


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis to ``n`` samples."""
    if x.shape[-1] >= n:
        return x[..., :n]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])
