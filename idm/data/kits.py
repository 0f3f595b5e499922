"""Sampled drum kits: Hydrogen kit folders, SoundFonts and one-shot folders mapped to the 9 classes.

Every sample becomes float32 mono at 44.1 kHz, trimmed to start at its attack (0.5 ms before the
first sample within 40 dB of the peak) and to end 60 dB under its peak; each instrument's
loudest layer is scaled to its class's loudness target (``kitmap.yaml``). Registered one-shot
pools (:mod:`idm.data.pools`) load like kits, with role ``pool``. The sounds that ``kitmap.yaml``
reserves for independent evaluation are refused by every loader.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from idm.classes import CLASSES
from idm.data.kitmap import Assignment, FileSpec, KeySpec, KitEntry, KitMap, load_kitmap
from idm.data.sf2 import read_sf2
from idm.errors import DataError

__all__ = [
    "DEFAULT_KITS_ROOT",
    "SAMPLE_RATE",
    "Instrument",
    "Kit",
    "Layer",
    "load_folder",
    "load_hydrogen",
    "load_kit",
    "load_kit_ref",
    "load_kits",
    "load_oneshots",
    "load_sf2",
    "loudness_db",
    "normalise",
    "pool_kits",
    "prepare_sample",
    "read_audio",
    "training_kits",
    "validation_kits",
]

SAMPLE_RATE = 44100
#: Where the Debian packages install kits: hydrogen/data/drumkits/ and sounds/sf2/ below it.
DEFAULT_KITS_ROOT = Path("/usr/share")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aif", ".aiff")
_INSTALL_HINT = (
    "install the Debian packages hydrogen-drumkits, avldrums.lv2-soundfont, lmms-common and sonic-pi-samples "
    "(apt-get install hydrogen-drumkits avldrums.lv2-soundfont lmms-common sonic-pi-samples), pass the kits root, "
    "or use a data pack made by 'idm data pack'"
)


@dataclass(frozen=True, eq=False)
class Layer:
    """One velocity layer: a mono 44.1 kHz sample played for velocities ``vel_lo..vel_hi`` (0-1, MIDI/127)."""

    audio: np.ndarray  # float32 [L]
    vel_lo: float
    vel_hi: float
    gain: float  # linear; the kit's layer gain times the class loudness normalisation


@dataclass(frozen=True, eq=False)
class Instrument:
    """A kit instrument: velocity layers; ``notes`` non-empty = an articulation played only for those GMD notes."""

    name: str
    layers: tuple[Layer, ...]
    notes: tuple[int, ...] = ()

    def loudest(self) -> float:
        """Loudness (dB) of the loudest layer at its gain."""
        return max(loudness_db(la.audio, la.gain) for la in self.layers)


@dataclass(eq=False)
class Kit:
    """A drum kit mapped to the project classes: class name -> instruments (empty tuple: the kit lacks it)."""

    name: str
    license: str
    instruments: dict[str, tuple[Instrument, ...]]
    author: str = ""
    role: str = "user"
    source: str = ""
    comment: str = ""

    def has(self, cls: str) -> bool:
        """Whether the kit can play class ``cls``."""
        return bool(self.instruments.get(cls))

    @property
    def present(self) -> tuple[str, ...]:
        """Classes the kit has, project order."""
        return tuple(c for c in CLASSES if self.has(c))

    def main(self, cls: str) -> tuple[Instrument, ...]:
        """The instruments that play ``cls`` in general (not articulations); all of them if it has only those."""
        ins = self.instruments.get(cls, ())
        mains = tuple(i for i in ins if not i.notes)
        return mains or ins

    def layers(self, cls: str) -> tuple[Layer, ...]:
        """Velocity layers of the first main instrument of ``cls`` (empty if the kit lacks the class)."""
        m = self.main(cls)
        return m[0].layers if m else ()

    @property
    def n_layers(self) -> int:
        return sum(len(i.layers) for ins in self.instruments.values() for i in ins)


def loudness_db(x: np.ndarray, gain: float = 1.0, seconds: float = 0.1) -> float:
    """RMS level in dB of the first ``seconds`` of a one-shot, times ``gain``."""
    head = x[: max(1, int(seconds * SAMPLE_RATE))].astype(np.float64) * gain
    return float(10.0 * np.log10(np.mean(head * head) + 1e-20))


def prepare_sample(x: np.ndarray, sr: int, semitones: float = 0.0, name: str = "sample") -> np.ndarray:
    """Mono 44.1 kHz float32, re-pitched by ``semitones``, trimmed to its attack and to -60 dB under its peak."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    if x.size == 0 or not np.isfinite(x).all():
        raise DataError(f"{name}: empty sample or NaN/Inf values")
    # Playing `semitones` higher = reading the sample faster = treating it as recorded at a higher rate.
    rate = sr * 2.0 ** (semitones / 12.0)
    if rate != SAMPLE_RATE:
        import soxr

        x = soxr.resample(x, rate, SAMPLE_RATE, quality="VHQ").astype(np.float32)
    a = np.abs(x)
    peak = float(a.max())
    if peak == 0.0:
        raise DataError(f"{name}: silent sample")
    start = max(0, int(np.argmax(a >= peak * 0.01)) - SAMPLE_RATE // 2000)
    end = x.size - int(np.argmax(a[::-1] >= peak * 1e-3))
    x = x[start:end].copy()
    fade = min(x.size, SAMPLE_RATE // 500)  # 2 ms
    x[x.size - fade :] *= np.linspace(1.0, 0.0, fade, endpoint=False, dtype=np.float32)
    return x


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a sample file (WAV, FLAC, Ogg Vorbis, AIFF) as float32 ``[frames, channels]`` and its rate.

    A RIFF/WAVE file that wraps an Ogg Vorbis stream (format tag 0x674f, as lmms-common's
    ``kick04.ogg``) is decoded from its embedded Ogg stream.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: sample file not found")
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        data = path.read_bytes()
        at = data.find(b"OggS", 12, 4096)
        if data[:4] != b"RIFF" or at < 0:
            raise DataError(f"{path}: unreadable sample ({str(e).splitlines()[0]})") from None
        try:
            x, sr = sf.read(io.BytesIO(data[at:]), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as e2:
            raise DataError(f"{path}: unreadable sample ({str(e2).splitlines()[0]})") from None
    return x, int(sr)


def _read(path: Path, semitones: float = 0.0) -> np.ndarray:
    x, sr = read_audio(path)
    return prepare_sample(x, sr, semitones, str(path))


def normalise(instruments: dict[str, tuple[Instrument, ...]], kitmap: KitMap) -> dict[str, tuple[Instrument, ...]]:
    """Scale every instrument so that its loudest layer meets its class's loudness target."""
    out: dict[str, tuple[Instrument, ...]] = {}
    for cls, ins in instruments.items():
        lst = []
        for i in ins:
            g = 10.0 ** ((kitmap.loudness_db[cls] - i.loudest()) / 20.0)
            lst.append(replace(i, layers=tuple(replace(la, gain=la.gain * g) for la in i.layers)))
        out[cls] = tuple(lst)
    return out


def _empty() -> dict[str, list[Instrument]]:
    return {c: [] for c in CLASSES}


def _finish(ins: dict[str, list[Instrument]]) -> dict[str, tuple[Instrument, ...]]:
    return {c: tuple(ins[c]) for c in CLASSES}


def _text(el: ET.Element, tag: str, ns: str, default: str | None = None) -> str | None:
    v = el.findtext(ns + tag)
    return default if v is None or not v.strip() else v.strip()


def _float(el: ET.Element, tag: str, ns: str, default: float, where: str) -> float:
    v = _text(el, tag, ns)
    if v is None:
        return default
    try:
        return float(v)
    except ValueError:
        raise DataError(f"{where}: <{tag}> is not a number: {v!r}") from None


def load_hydrogen(
    folder: str | Path,
    overrides: dict[str, Assignment | None] | None = None,
    *,
    name: str | None = None,
    license: str | None = None,
    kitmap: KitMap | None = None,
    normalise_loudness: bool = True,
) -> Kit:
    """Load a Hydrogen kit folder (``drumkit.xml`` + samples), instruments mapped to classes by name.

    Parameters
    ----------
    folder
        The kit folder.
    overrides
        Instrument name -> :class:`Assignment` (or None to ignore it), winning over the name rules.
    name, license
        Default: the kit's own ``<name>`` and ``<license>``.
    kitmap
        Rules and loudness targets (default: the package's ``kitmap.yaml``).
    normalise_loudness
        Scale each instrument's loudest layer to its class target.
    """
    folder = Path(folder)
    km = kitmap or load_kitmap()
    km.reserved.check(folder, "Hydrogen kit")
    xml = folder / "drumkit.xml"
    if not xml.is_file():
        raise DataError(f"{folder}: not a Hydrogen kit (no drumkit.xml)")
    try:
        root = ET.parse(xml).getroot()  # noqa: S314 -- a local kit file the user chose, no network input
    except ET.ParseError as e:
        raise DataError(f"{xml}: broken drumkit.xml ({e})") from None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag != ns + "drumkit_info":
        raise DataError(f"{xml}: not a Hydrogen drumkit (root element <{root.tag}>)")
    km.reserved.check(_text(root, "name", ns, "") or "", "Hydrogen kit")
    out = _empty()
    for el in root.iter(ns + "instrument"):
        iname = _text(el, "name", ns, "") or ""
        where = f"{xml}: instrument {iname!r}"
        a = km.classify(iname, overrides)
        if a is None:
            continue
        layers = []
        for lay in el.iter(ns + "layer"):
            fname = _text(lay, "filename", ns)
            if fname is None:
                continue
            lo, hi = _float(lay, "min", ns, 0.0, where), _float(lay, "max", ns, 1.0, where)
            semis = _float(lay, "pitch", ns, 0.0, where) + a.pitch
            audio = _read(folder / fname, semis)
            layers.append(Layer(audio, lo, hi, _float(lay, "gain", ns, 1.0, where)))
        if not layers and _text(el, "filename", ns):  # old format: one sample per instrument
            layers.append(Layer(_read(folder / str(_text(el, "filename", ns)), a.pitch), 0.0, 1.0, 1.0))
        if layers:
            out[a.cls].append(Instrument(iname, tuple(layers), a.notes))
    inst = _finish(out)
    if not any(inst.values()):
        raise DataError(f"{xml}: no instrument maps to a drum class (names: see the kit map rules)")
    return Kit(
        name=name or _text(root, "name", ns, folder.name) or folder.name,
        license=license or _text(root, "license", ns, "unknown") or "unknown",
        instruments=normalise(inst, km) if normalise_loudness else inst,
        author=_text(root, "author", ns, "") or "",
        source=str(folder),
    )


def load_sf2(
    path: str | Path,
    mapping: dict[str, tuple[KeySpec, ...]] | None = None,
    *,
    name: str | None = None,
    license: str | None = None,
    kitmap: KitMap | None = None,
    normalise_loudness: bool = True,
) -> Kit:
    """Load the first preset of a SoundFont as a kit: per class the zones (velocity layers) of its keys.

    ``mapping`` (class -> :class:`KeySpec`) defaults to the kit map's General MIDI keys.
    Zones' tuning and the spec's ``pitch`` are applied to the samples; attenuation becomes the layer gain.
    """
    path = Path(path)
    km = kitmap or load_kitmap()
    km.reserved.check(path, "SoundFont")
    sf2 = read_sf2(path)
    km.reserved.check(sf2.info.get("INAM", ""), "SoundFont")
    out = _empty()
    for cls, specs in (mapping or km.sf2_default).items():
        for spec in specs:
            zones = []
            for key in spec.keys:
                zones = sf2.key_zones(key)
                if zones:
                    break
            if not zones:
                continue
            layers = tuple(
                Layer(
                    prepare_sample(z.sample, z.sample_rate, z.semitones + spec.pitch, f"{path}: {z.sample_name}"),
                    z.vel_lo / 127.0,
                    z.vel_hi / 127.0,
                    10.0 ** (-z.attenuation_db / 20.0),
                )
                for z in zones
            )
            base = re.sub(r"-\d+$", "", zones[0].sample_name)
            shift = f" ({spec.pitch:+g} semitones)" if spec.pitch else ""
            out[cls].append(Instrument(f"key {zones[0].key}: {base}{shift}", layers, spec.notes))
    inst = _finish(out)
    if not any(inst.values()):
        raise DataError(f"{path}: the SoundFont plays none of the mapped keys")
    return Kit(
        name=name or sf2.info.get("INAM", path.stem),
        license=license or sf2.info.get("ICOP", "unknown"),
        instruments=normalise(inst, km) if normalise_loudness else inst,
        author=sf2.info.get("IENG", ""),
        source=str(path),
    )


def load_folder(
    folder: str | Path,
    *,
    name: str | None = None,
    license: str = "unknown (user kit)",
    kitmap: KitMap | None = None,
    normalise_loudness: bool = True,
) -> Kit:
    """Load a folder of one-shots per class: ``kick/*.wav`` or ``kick*.wav`` (class names of :data:`CLASSES`).

    Each file is one instrument with a single layer for all velocities; several files for a class
    are alternatives (the renderer picks one per example).
    """
    folder = Path(folder)
    km = kitmap or load_kitmap()
    km.reserved.check(folder, "one-shot folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: one-shot folder not found")
    out = _empty()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    taken: set[Path] = set()
    for cls in CLASSES:
        sub = folder / cls
        found = sorted(p for p in sub.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES) if sub.is_dir() else []
        found += [p for p in files if p.name.lower().startswith(cls) and p not in taken]
        for p in found:
            km.reserved.check(p, "sample")
            taken.add(p)
            out[cls].append(Instrument(p.stem, (Layer(_read(p), 0.0, 1.0, 1.0),)))
    inst = _finish(out)
    if not any(inst.values()):
        raise DataError(
            f"{folder}: no one-shots found; expected files like kick/*.wav or kick*.wav, classes: {', '.join(CLASSES)}"
        )
    return Kit(
        name=name or folder.name,
        license=license,
        instruments=normalise(inst, km) if normalise_loudness else inst,
        source=str(folder),
    )


def load_oneshots(
    folder: str | Path,
    files: dict[str, tuple[FileSpec, ...]],
    *,
    name: str | None = None,
    license: str = "unknown (user kit)",
    kitmap: KitMap | None = None,
    normalise_loudness: bool = True,
) -> Kit:
    """Load a kit from named one-shot files of a folder: per class, instruments of one or more files.

    Parameters
    ----------
    folder
        Where the files are.
    files
        Class -> :class:`~idm.data.kitmap.FileSpec` (files as velocity layers, softest first: ``n``
        files tile velocities 0-1 in ``n`` equal ranges; ``notes`` makes an articulation).
    name, license, kitmap, normalise_loudness
        As for :func:`load_folder`.
    """
    folder = Path(folder)
    km = kitmap or load_kitmap()
    km.reserved.check(folder, "one-shot folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: one-shot folder not found")
    out = _empty()
    for cls, specs in files.items():
        if cls not in out:
            raise DataError(f"{folder}: unknown class {cls!r}; expected one of {', '.join(CLASSES)}")
        for spec in specs:
            n = len(spec.files)
            layers = []
            for j, f in enumerate(spec.files):
                km.reserved.check(folder / f, "sample")
                layers.append(Layer(_read(folder / f, spec.pitch), j / n, (j + 1) / n, 1.0))
            label = Path(spec.files[0]).stem if n == 1 else "+".join(Path(f).stem for f in spec.files)
            out[cls].append(Instrument(label, tuple(layers), spec.notes))
    inst = _finish(out)
    if not any(inst.values()):
        raise DataError(f"{folder}: no one-shot files given for any class")
    return Kit(
        name=name or folder.name,
        license=license,
        instruments=normalise(inst, km) if normalise_loudness else inst,
        source=str(folder),
    )


def _load_entry(entry: KitEntry, root: Path, km: KitMap) -> Kit:
    if entry.source == "pool":
        from idm.data.pools import load_pool

        return load_pool(entry, root, km)
    loc = entry.location(root)
    if not loc.exists():
        raise DataError(f"kit {entry.name!r} not found at {loc}: {_INSTALL_HINT}")
    if entry.source == "hydrogen":
        kit = load_hydrogen(loc, entry.overrides, name=entry.name, license=entry.license, kitmap=km)
    elif entry.source == "sf2":
        kit = load_sf2(loc, entry.sf2_map, name=entry.name, license=entry.license, kitmap=km)
    elif entry.files is not None:
        kit = load_oneshots(loc, entry.files, name=entry.name, license=entry.license, kitmap=km)
    else:
        kit = load_folder(loc, name=entry.name, license=entry.license, kitmap=km)
    kit.author, kit.role, kit.comment = entry.author, entry.role, entry.comment
    return kit


def _is_pack(root: Path) -> bool:
    return (root / "kits.json").is_file()


def load_kit(name: str, root: str | Path | None = None, kitmap: KitMap | None = None) -> Kit:
    """A registered kit or pool by name, from the kits root (default ``/usr/share``) or from a data pack folder."""
    root = Path(root) if root is not None else DEFAULT_KITS_ROOT
    if _is_pack(root):
        from idm.data.pack import load_pack_kits

        return load_pack_kits(root, [name])[0]
    km = kitmap or load_kitmap()
    return _load_entry(km.entry(name), root, km)


def load_kits(names: list[str] | tuple[str, ...], root: str | Path | None = None) -> list[Kit]:
    """Several registered kits or pools by name, in the given order (see :func:`load_kit`)."""
    root = Path(root) if root is not None else DEFAULT_KITS_ROOT
    if _is_pack(root):
        from idm.data.pack import load_pack_kits

        return load_pack_kits(root, list(names))
    km = load_kitmap()
    return [_load_entry(km.entry(n), root, km) for n in names]


def load_kit_ref(ref: str, root: str | Path | None = None) -> Kit:
    """A kit or pool by registered name (see :func:`load_kit`), or by path: Hydrogen kit folder, ``.sf2``
    file, or a folder of one-shots per class. Reserved evaluation sounds are refused."""
    p = Path(ref)
    load_kitmap().reserved.check(ref)
    if p.exists():
        if p.is_file():
            return load_sf2(p)
        return load_hydrogen(p) if (p / "drumkit.xml").is_file() else load_folder(p)
    return load_kit(ref, root)


def training_kits(root: str | Path | None = None) -> list[Kit]:
    """The kits trained on: acoustic (role training) then electronic (role augmentation)."""
    return load_kits(load_kitmap().names(("training", "augmentation")), root)


def validation_kits(root: str | Path | None = None) -> list[Kit]:
    """The held-out kits (role validation), never trained on."""
    return load_kits(load_kitmap().names(("validation",)), root)


def pool_kits(root: str | Path | None = None) -> list[Kit]:
    """The one-shot pools (role pool) as kits: per class many single-sample instruments."""
    return load_kits(load_kitmap().names(("pool",)), root)
