"""The training pack: mapped kit samples as 16-bit FLAC + kit metadata + GMD train/validation MIDI, in one folder.

Layout::

    PACK/kits.json                      format, kits (role, license, classes -> instruments -> layers)
    PACK/kits/<kit>/<class>-<i>-<l>.flac  44.1 kHz mono 16-bit, peak-normalised (gain keeps the level)
    PACK/gmd/info.csv, LICENSE, drummer*/...mid, events.npz   the GMD subset (CC-BY 4.0)
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from idm.classes import CLASSES
from idm.data.gmd import GrooveMidi
from idm.data.kitmap import load_kitmap
from idm.data.kits import SAMPLE_RATE, Instrument, Kit, Layer, load_kits
from idm.errors import DataError, OutputError

__all__ = ["PACK_FORMAT", "PackReport", "load_pack_kits", "pack_size", "write_pack"]

PACK_FORMAT = "idm-data-pack-v1"
PACK_SPLITS = ("train", "validation")
GMD_CREDIT = (
    "Groove MIDI Dataset (Gillick, Roberts, Engel, Eck, Bamman: 'Learning to Groove with Inverse "
    "Sequence Transformations', ICML 2019), Google LLC, CC-BY 4.0"
)


@dataclass
class PackReport:
    """What :func:`write_pack` wrote."""

    path: Path
    bytes: int
    kits: int
    layers: int
    performances: int


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "kit"


def pack_size(path: str | Path) -> int:
    """Total bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _write_kit(kit: Kit, folder: Path, rel: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    classes: dict[str, list[dict]] = {}
    for cls in CLASSES:
        lst = []
        for i, ins in enumerate(kit.instruments.get(cls, ())):
            layers = []
            for j, la in enumerate(ins.layers):
                peak = float(np.max(np.abs(la.audio)))
                name = f"{cls}-{i}-{j}.flac"
                pcm = np.clip(np.round(la.audio / peak * 32767.0), -32768, 32767).astype(np.int16)
                sf.write(str(folder / name), pcm, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
                layers.append({"file": f"{rel}/{name}", "vel_lo": la.vel_lo, "vel_hi": la.vel_hi,
                               "gain": la.gain * peak * 32768.0 / 32767.0})  # fmt: skip
            lst.append({"name": ins.name, "notes": list(ins.notes), "layers": layers})
        classes[cls] = lst
    return {"name": kit.name, "role": kit.role, "license": kit.license, "author": kit.author,
            "comment": kit.comment, "classes": classes}  # fmt: skip


def write_pack(
    gmd_root: str | Path,
    out: str | Path,
    kits_root: str | Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    kits: list[str] | None = None,
) -> PackReport:
    """Write the training pack of the registered kits (all, or ``kits``) and the GMD train/validation MIDI.

    The pack is written to a temporary folder beside ``out`` and renamed into place; an existing
    ``out`` is replaced only with ``force``.
    """
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not force:
        raise OutputError(f"{out} exists; pass --force to replace it")
    gmd = GrooveMidi(gmd_root)
    names = list(kits) if kits is not None else load_kitmap().names()
    say = progress or (lambda _msg: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        entries, n_layers = [], 0
        for kit in _each_kit(names, kits_root, say):
            slug = _slug(kit.name)
            entries.append(_write_kit(kit, tmp / "kits" / slug, f"kits/{slug}"))
            n_layers += kit.n_layers
        say("GMD MIDI")
        perfs = [p for p in gmd.performances if p.split in PACK_SPLITS]
        gdir = tmp / "gmd"
        gdir.mkdir()
        with open(gmd.root / "info.csv", newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], [r for r in reader if r["split"] in PACK_SPLITS]
        with open(gdir / "info.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        for extra in ("LICENSE", "README"):
            if (gmd.root / extra).is_file():
                shutil.copyfile(gmd.root / extra, gdir / extra)
        for p in perfs:
            dst = gdir / p.midi_filename
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(gmd.midi_path(p), dst)
        packed = GrooveMidi(gdir)
        packed.write_events_cache(packed.performances)
        meta = {"format": PACK_FORMAT, "sample_rate": SAMPLE_RATE, "kits": entries,
                "gmd": {"root": "gmd", "splits": list(PACK_SPLITS), "performances": len(perfs),
                        "credit": GMD_CREDIT}}  # fmt: skip
        (tmp / "kits.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackReport(out, pack_size(out), len(entries), n_layers, len(perfs))


def _each_kit(names: list[str], root: str | Path | None, say: Callable[[str], None]) -> Iterator[Kit]:
    for n in names:
        say(f"kit {n}")
        yield load_kits([n], root)[0]


def _read_meta(pack: Path) -> dict:
    path = pack / "kits.json"
    if not path.is_file():
        raise DataError(f"{pack}: not a data pack (no kits.json); make one with 'idm data pack'")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != PACK_FORMAT:
        raise DataError(f"{path}: unknown pack format (expected {PACK_FORMAT!r})")
    return meta


def load_pack_kits(pack_dir: str | Path, names: list[str] | None = None) -> list[Kit]:
    """Kits of a data pack (all, or ``names`` in that order), as :func:`~idm.data.kits.load_kit` gives them."""
    pack = Path(pack_dir)
    meta = _read_meta(pack)
    by_name = {k["name"]: k for k in meta["kits"]}
    wanted = list(by_name) if names is None else list(names)
    out = []
    for n in wanted:
        if n not in by_name:
            raise DataError(f"{pack}: no kit {n!r} in this pack; it has: {', '.join(by_name)}")
        k = by_name[n]
        inst: dict[str, tuple[Instrument, ...]] = {}
        for cls in CLASSES:
            lst = []
            for ins in k["classes"].get(cls, []):
                layers = []
                for la in ins["layers"]:
                    f = pack / la["file"]
                    if not f.is_file():
                        raise DataError(f"{pack}: sample {la['file']} of kit {n!r} is missing")
                    audio, sr = sf.read(str(f), dtype="float32")
                    if sr != SAMPLE_RATE or audio.ndim != 1:
                        raise DataError(f"{f}: expected mono {SAMPLE_RATE} Hz, got {sr} Hz shape {audio.shape}")
                    layers.append(Layer(audio, float(la["vel_lo"]), float(la["vel_hi"]), float(la["gain"])))
                lst.append(Instrument(ins["name"], tuple(layers), tuple(ins["notes"])))
            inst[cls] = tuple(lst)
        out.append(Kit(n, k["license"], inst, k.get("author", ""), k.get("role", "user"), str(pack),
                       k.get("comment", "")))  # fmt: skip
    return out
