"""``--replace``: the user's samples for drum replacement, loaded and resampled before any audio runs.

A spec is either a whole kit (a registered kit name from ``idm data kits``, a Hydrogen kit folder, an ``.sf2``
file or a folder of one-shots per class): every drum the kit has is replaced; or ``DRUM=SOURCE`` items separated
by commas, where DRUM is a class (``kick``, ``hihat_open``...) or a group (``toms``, ``hihat``, ``cymbals``) and
SOURCE is a sample file, a folder of samples (velocity layers, ordered by loudness: the softest plays the lowest
velocities), or a kit as above (its layers for that drum). Samples are trimmed to their attack (as the kit
loaders do) and resampled to the model's rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from idm.runtime.engine.replace import ReplacementKit, SampleLayer

from idm.classes import CLASSES, GROUP_OF, GROUPS
from idm.errors import DataError, IDMError

__all__ = ["load_replacement", "parse_replace_spec"]


def _classes_of(name: str) -> list[int]:
    name = name.strip().lower()
    if name in CLASSES:
        return [CLASSES.index(name)]
    if name in GROUPS:
        return [k for k, g in enumerate(GROUP_OF) if g == name]
    names = ", ".join((*CLASSES, *[g for g in GROUPS if g not in CLASSES]))
    raise IDMError(f"--replace: unknown drum {name!r}; expected one of {names}")


def parse_replace_spec(spec: str) -> list[tuple[list[int], str]] | str:
    """``kick=a.wav,snare=DIR`` -> ``[(class indices, source), ...]``; a spec without ``=`` is a whole kit (returned
    as is). Raises :class:`IDMError` (one line) for an empty spec, an unknown drum or a drum named twice."""
    spec = spec.strip()
    if not spec:
        raise IDMError("--replace: nothing to replace (give a kit, or DRUM=SAMPLE items such as kick=kick.wav)")
    if "=" not in spec or Path(spec).exists():
        return spec
    out: list[tuple[list[int], str]] = []
    seen: set[int] = set()
    for item in spec.split(","):
        if not item.strip():
            continue
        drum, eq, source = item.partition("=")
        if not eq or not source.strip():
            raise IDMError(f"--replace: {item.strip()!r} is not DRUM=SAMPLE (e.g. kick=kick.wav)")
        ks = _classes_of(drum)
        if seen & set(ks):
            raise IDMError(f"--replace: {drum.strip()!r} is given twice")
        seen |= set(ks)
        out.append((ks, source.strip()))
    return out


def _resampled(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return np.ascontiguousarray(x, dtype=np.float32)
    import soxr

    return np.ascontiguousarray(soxr.resample(x, rate, to, quality="VHQ"), dtype=np.float32)


def _file_layer(path: Path, sample_rate: int) -> tuple[np.ndarray, float]:
    """A sample file as mono float32 at ``sample_rate`` (attack-trimmed) and its loudness (dB)."""
    from idm.data.kits import SAMPLE_RATE, loudness_db, prepare_sample, read_audio

    x, sr = read_audio(path)
    y = prepare_sample(x, sr, 0.0, str(path))
    return _resampled(y, SAMPLE_RATE, sample_rate), loudness_db(y)


def _folder_layers(folder: Path, sample_rate: int) -> list[SampleLayer]:
    """The audio files of a folder as velocity layers, softest first, tiling velocities 0-1."""
    from idm.data.kits import AUDIO_SUFFIXES

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    loaded = sorted((_file_layer(p, sample_rate) for p in files), key=lambda t: t[1])
    n = len(loaded)
    return [SampleLayer(a, i / n, (i + 1) / n, 1.0) for i, (a, _) in enumerate(loaded)]


def _kit_layers(ref: str, kits_root: str | Path | None, sample_rate: int) -> tuple[str, list[list[SampleLayer]]]:
    """A kit's name and, per class, its main instrument's layers (gains included) at ``sample_rate``."""
    from idm.data.kits import SAMPLE_RATE, load_kit_ref

    kit = load_kit_ref(ref, kits_root)

    def layer(la: Any) -> SampleLayer:
        return SampleLayer(_resampled(la.audio, SAMPLE_RATE, sample_rate), la.vel_lo, la.vel_hi, la.gain)

    per = [[layer(la) for la in kit.layers(c)] for c in CLASSES]
    return kit.name, per


def load_replacement(spec: str, sample_rate: int, kits_root: str | Path | None = None) -> ReplacementKit:
    """The :class:`ReplacementKit` of a ``--replace`` spec (module docstring), at ``sample_rate``.

    Raises
    ------
    IDMError
        One line: an unknown drum, a missing or unreadable sample, a kit that is not installed or lacks a drum.
    """
    parsed = parse_replace_spec(spec)
    layers: list[list[SampleLayer]] = [[] for _ in CLASSES]
    try:
        if isinstance(parsed, str):
            name, per = _kit_layers(parsed, kits_root, sample_rate)
            if not any(per):
                raise IDMError(f"--replace {parsed}: the kit has no drum this model knows")
            return ReplacementKit(per, sample_rate, name)
        from idm.data.kits import AUDIO_SUFFIXES

        for ks, source in parsed:
            p = Path(source).expanduser()
            if p.suffix.lower() in (*AUDIO_SUFFIXES, ".sf2") and not p.exists():
                raise IDMError(f"--replace: {p}: file not found")
            if p.is_file() and p.suffix.lower() != ".sf2":
                audio, _ = _file_layer(p, sample_rate)
                these = [SampleLayer(audio)]
                for k in ks:
                    layers[k] = these
                continue
            if p.is_dir() and not (p / "drumkit.xml").is_file() and not any(q.is_dir() for q in p.iterdir()):
                these = _folder_layers(p, sample_rate)
                if not these:
                    raise IDMError(f"--replace: {p}: no audio files (WAV, FLAC, OGG, AIFF) in this folder")
                for k in ks:
                    layers[k] = these
                continue
            name, per = _kit_layers(source, kits_root, sample_rate)
            for k in ks:
                if not per[k]:
                    raise IDMError(f"--replace: kit {name!r} has no {CLASSES[k]}")
                layers[k] = per[k]
    except DataError as e:
        raise IDMError(f"--replace: {e}") from None
    except OSError as e:
        raise IDMError(f"--replace: {e.filename or spec}: {e.strerror or e}") from None
    return ReplacementKit(layers, sample_rate, spec)
