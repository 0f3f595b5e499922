"""One call from audio to drum hits and stems, without PyTorch: :func:`transcribe` (like basic-pitch's ``predict``);
:func:`transfer_kit` plays a recording's performance on another kit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from idm.classes import CLASSES, GROUPS

__all__ = ["Hit", "KitTransfer", "Transcription", "transcribe", "transfer_kit"]


@dataclass(frozen=True)
class Hit:
    """One detected drum hit."""

    cls: str  #: class name (``idm.classes.CLASSES``)
    time: float  #: seconds from the start of the input
    velocity: int  #: MIDI velocity 1-127
    probability: float  #: the onset probability at the picked frame (0-1)
    note: int  #: MIDI note (General MIDI)


@dataclass
class Transcription:
    """What :func:`transcribe` found: hits in time order, stems at the input's rate, the onset probabilities."""

    hits: list[Hit]
    stems: dict[str, np.ndarray] | None  #: class (or group) name -> ``[n]`` float32, aligned with the input
    sample_rate: int  #: of ``stems`` (the input's)
    onset_probs: np.ndarray  #: ``[9, F]`` per class (project order) and model frame
    frame_rate: float  #: frames per second of ``onset_probs``

    def write_midi(self, path: str | Path) -> None:
        """The hits as a General MIDI drum file (as ``idm separate`` writes it)."""
        from idm.midi import Onset, write_midi

        write_midi([Onset(h.cls, h.time, h.velocity) for h in self.hits], path)


def transcribe(
    audio: str | Path | np.ndarray,
    sample_rate: int | None = None,
    *,
    model: str | Path = "live",
    stems: str | None = "masked",
    groups: bool = False,
    delta: float | dict[str, float] | None = None,
    threads: int = 2,
    provider: str = "cpu",
) -> Transcription:
    """Drum hits (class, time, velocity, probability) and stems of a recording, through an ONNX bundle.

    Parameters
    ----------
    audio
        A file path (any format libsndfile reads), or samples ``[n]`` / ``[n, channels]`` (then give
        ``sample_rate``). Stereo is downmixed.
    sample_rate
        Rate of an array input.
    model
        ``live`` or ``paper`` (shipped), or a bundle folder made by ``idm-export``.
    stems
        ``masked`` (alpha-Wiener on the mix), ``synth`` (the model's one-shots) or None (hits only).
    groups
        Five group stems (kick, snare, toms, hihat, cymbals) instead of the nine classes.
    delta
        Sensitivity override: one value, or per class name (higher: fewer hits).
    threads, provider
        onnxruntime CPU threads and provider (``cpu``, ``cuda`` or ``auto``).

    Examples
    --------
    >>> from idm import transcribe
    >>> t = transcribe("drums.wav")                        # doctest: +SKIP
    >>> [(h.cls, round(h.time, 3), h.velocity) for h in t.hits[:3]]  # doctest: +SKIP
    >>> t.stems["kick"].shape                              # doctest: +SKIP
    """
    from idm.errors import AudioInputError
    from idm.models import resolve_bundle
    from idm.runtime.offline import OfflineConfig, OfflineSeparator

    x, sr, name = _read(audio, sample_rate)
    mode = stems or "none"
    sep = OfflineSeparator(resolve_bundle(str(model)),
                           OfflineConfig(mode=mode, threads=threads, provider=provider, delta=delta))  # fmt: skip
    try:
        onsets, out, analysis, ks, js = sep.separate_array(x, sr)
    except AudioInputError as e:
        raise AudioInputError(str(e).replace("<array>", name)) from None
    assert analysis.onset_prob is not None
    probs = analysis.onset_prob
    hits = _hits(onsets, ks, js, probs)
    named = None if out is None else _named(out, groups)
    return Transcription(hits, named, sr, probs, sep.sample_rate / sep.hop)


@dataclass
class KitTransfer:
    """What :func:`transfer_kit` made: the performance on the other kit, as a mix and per class (or group)."""

    mix: np.ndarray  #: ``[n]`` float32 at ``sample_rate``, aligned with the input
    stems: dict[str, np.ndarray]  #: class (or group) name -> ``[n]``
    sample_rate: int
    hits: list[Hit]  #: the performance (as :func:`transcribe` finds it)


def transfer_kit(
    audio: str | Path | np.ndarray,
    kit_from: str | Path,
    sample_rate: int | None = None,
    *,
    model: str | Path = "live",
    groups: bool = False,
    delta: float | dict[str, float] | None = None,
    threads: int = 2,
    provider: str = "cpu",
) -> KitTransfer:
    """The drums of ``audio`` played on another kit: its hits and velocities, re-synthesized with the one-shot bank
    (kit embedding and per-class gains) that the model infers from the recording ``kit_from``, or played on the
    sample kit ``kit_from`` names (a registered kit, Hydrogen kit folder, ``.sf2`` or folder of one-shots per class).

    Parameters are those of :func:`transcribe`; ``kit_from`` is an audio file path or a kit. Torch-free.

    Examples
    --------
    >>> from idm import transfer_kit
    >>> t = transfer_kit("song.wav", "other_drums.wav")     # doctest: +SKIP
    >>> import soundfile as sf; sf.write("song_on_other_kit.wav", t.mix, t.sample_rate)  # doctest: +SKIP
    """
    from idm.errors import AudioInputError
    from idm.models import resolve_bundle
    from idm.runtime.offline import OfflineConfig, OfflineSeparator
    from idm.runtime.sources import ArraySource

    x, sr, name = _read(audio, sample_rate)
    sep = OfflineSeparator(resolve_bundle(str(model)), OfflineConfig(mode="none", threads=threads, provider=provider,
                                                                      delta=delta, kit_from=kit_from))  # fmt: skip
    try:
        a = sep.analyse(ArraySource(x, sr))
    except AudioInputError as e:
        raise AudioInputError(str(e).replace("<array>", name)) from None
    ks, js = sep.hits(a)
    assert a.onset_prob is not None
    hits = _hits(sep.onsets(a, ks, js), ks, js, a.onset_prob)
    tracks = sep.transfer_tracks(a, ks, js).render(0, a.n_model_samples)
    if sr != sep.sample_rate:
        from idm.audio import resample

        tracks = resample(tracks, sep.sample_rate, sr)
    n = x.shape[0]
    out = np.zeros((tracks.shape[0], n), dtype=np.float32)
    m = min(n, tracks.shape[1])
    out[:, :m] = tracks[:, :m]
    return KitTransfer(out.sum(axis=0), _named(out, groups), sr, hits)


def _read(audio: str | Path | np.ndarray, sample_rate: int | None) -> tuple[np.ndarray, int, str]:
    """Samples ``[n]`` or ``[n, channels]``, their rate and a name for messages, from a path or an array."""
    from idm.audio import read_frames
    from idm.errors import AudioInputError

    if isinstance(audio, str | Path):
        x, sr = read_frames(audio)
        if sample_rate is not None and sample_rate != sr:
            raise AudioInputError(f"{audio}: the file is at {sr} Hz; sample_rate={sample_rate} is for arrays")
        return x, sr, str(audio)
    if sample_rate is None:
        raise AudioInputError("an array input needs its sample_rate")
    return np.asarray(audio, dtype=np.float32), int(sample_rate), "<array>"


def _hits(onsets: list[Any], ks: np.ndarray, js: np.ndarray, probs: np.ndarray) -> list[Hit]:
    """The separator's onsets as :class:`Hit`, each with its onset probability."""
    return [Hit(o.cls, o.time, o.velocity, float(probs[int(k), int(j)]), o.note)
            for o, k, j in zip(onsets, ks, js, strict=True)]  # fmt: skip


def _named(stems: np.ndarray, groups: bool) -> dict[str, np.ndarray]:
    """Per-class stems ``[9, n]`` by name, or summed into the 5 groups."""
    from idm.classes import group_sum

    return dict(zip(GROUPS, group_sum(stems), strict=True)) if groups else dict(zip(CLASSES, stems, strict=True))
