"""The kit registry and class mapping kept as data (``kitmap.yaml``): name rules, per-kit overrides, licenses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from idm.classes import CLASSES
from idm.errors import DataError

__all__ = [
    "ROLES",
    "Assignment",
    "FileSpec",
    "KeySpec",
    "KitEntry",
    "KitMap",
    "PoolRule",
    "Reserved",
    "ReservedSound",
    "check_not_reserved",
    "load_kitmap",
]

#: Kit roles: trained on (acoustic), trained on as augmentation (electronic), held out (unseen),
#: one-shot pools (per class single samples that kits can borrow from).
ROLES: tuple[str, ...] = ("training", "augmentation", "validation", "pool")
SOURCES: tuple[str, ...] = ("hydrogen", "sf2", "folder", "pool")


@dataclass(frozen=True)
class Assignment:
    """Where a kit instrument goes: a class, optionally only for some GMD notes, optionally re-pitched."""

    cls: str
    notes: tuple[int, ...] = ()
    pitch: float = 0.0


@dataclass(frozen=True)
class KeySpec:
    """SoundFont keys for one class instrument: the first key of ``keys`` the font plays is used."""

    keys: tuple[int, ...]
    notes: tuple[int, ...] = ()
    pitch: float = 0.0


@dataclass(frozen=True)
class FileSpec:
    """One instrument of a one-shot folder kit: its files as velocity layers (softest first), notes, pitch."""

    files: tuple[str, ...]
    notes: tuple[int, ...] = ()
    pitch: float = 0.0


@dataclass(frozen=True)
class PoolRule:
    """A pool's file-name rule: files whose name (without suffix) matches go to ``assignment`` (None: ignored)."""

    pattern: re.Pattern[str]
    assignment: Assignment | None
    why: str = ""


@dataclass(frozen=True)
class KitEntry:
    """One registered kit or pool: where it is (relative to the kits root), its role, credit and mapping.

    Pools (source ``pool``) have their folders in ``folders`` (``path`` is the first one), their
    file-name rules in ``pool_rules`` and per-file decisions in ``overrides`` (reasons in ``why``).
    """

    name: str
    role: str
    source: str
    path: str
    author: str
    license: str
    comment: str = ""
    overrides: dict[str, Assignment | None] = field(default_factory=dict)
    sf2_map: dict[str, tuple[KeySpec, ...]] | None = None
    files: dict[str, tuple[FileSpec, ...]] | None = None
    folders: tuple[str, ...] = ()
    pool_rules: tuple[PoolRule, ...] = ()
    velocity_layers: tuple[str, ...] = ()
    why: dict[str, str] = field(default_factory=dict)

    def location(self, root: Path) -> Path:
        """File or folder of this kit under a kits root such as ``/usr/share`` (a pool's first folder)."""
        if self.source == "hydrogen":
            return root / "hydrogen" / "data" / "drumkits" / self.path
        if self.source == "sf2":
            return root / "sounds" / "sf2" / self.path
        return root / self.path

    def locations(self, root: Path) -> list[Path]:
        """Every folder of a pool (for a kit: its one location)."""
        return [root / f for f in self.folders] if self.folders else [self.location(root)]


@dataclass(frozen=True)
class ReservedSound:
    """A reserved evaluation sound: its Debian package, install paths (globs under the kits root), name pattern."""

    package: str
    paths: tuple[str, ...]
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Reserved:
    """The sounds reserved for independent evaluation, and why (``reserved`` in ``kitmap.yaml``)."""

    reason: str
    sounds: tuple[ReservedSound, ...] = ()

    def which(self, ref: str | Path) -> ReservedSound | None:
        """The reserved sound that a name or path is or lies in (symbolic links resolved), else None."""
        texts = [str(ref)]
        p = Path(ref)
        try:
            if p.exists() or p.is_symlink():
                texts.append(str(p.resolve()))
        except OSError:  # pragma: no cover -- unreadable path: the name alone is checked
            pass
        for sound in self.sounds:
            if any(sound.pattern.search(t) for t in texts):
                return sound
        return None

    def check(self, ref: str | Path, what: str = "kit") -> None:
        """Raise :class:`DataError` if ``ref`` (a name or path) is a reserved sound."""
        sound = self.which(ref)
        if sound is not None:
            msg = f"{what} {str(ref)!r} is reserved for independent evaluation ({sound.package}): {self.reason}"
            raise DataError(msg)

    def installed(self, root: Path) -> list[Path]:
        """The reserved files and folders installed under a kits root (symbolic links resolved, once each)."""
        out: dict[Path, None] = {}
        for sound in self.sounds:
            for pat in sound.paths:
                for p in sorted(Path(root).glob(pat)):
                    out.setdefault(p.resolve(), None)
        return list(out)


def _assignment(v: Any, where: str) -> Assignment | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = {"class": v}
    if not isinstance(v, dict) or "class" not in v:
        raise DataError(f"kit map: {where}: expected a class name, null or {{class, notes, pitch}}, got {v!r}")
    if v["class"] is None:
        return None
    if v["class"] not in CLASSES:
        raise DataError(f"kit map: {where}: unknown class {v['class']!r}; expected one of {', '.join(CLASSES)}")
    return Assignment(v["class"], tuple(int(n) for n in v.get("notes", ())), float(v.get("pitch", 0.0)))


def _keyspecs(m: Any, where: str) -> dict[str, tuple[KeySpec, ...]]:
    if not isinstance(m, dict):
        raise DataError(f"kit map: {where}: expected a mapping class -> list of keys")
    out: dict[str, tuple[KeySpec, ...]] = {}
    for cls, specs in m.items():
        if cls not in CLASSES:
            raise DataError(f"kit map: {where}: unknown class {cls!r}; expected one of {', '.join(CLASSES)}")
        lst = []
        for s in specs:
            keys = s["key"] if isinstance(s["key"], list) else [s["key"]]
            lst.append(KeySpec(tuple(int(k) for k in keys), tuple(int(n) for n in s.get("notes", ())),
                               float(s.get("pitch", 0.0))))  # fmt: skip
        out[cls] = tuple(lst)
    return out


@dataclass(frozen=True)
class KitMap:
    """The parsed ``kitmap.yaml``."""

    loudness_db: dict[str, float]
    rules: tuple[tuple[re.Pattern[str], Assignment | None], ...]
    sf2_default: dict[str, tuple[KeySpec, ...]]
    kits: tuple[KitEntry, ...]
    excluded: tuple[str, ...]
    reserved: Reserved = field(default_factory=lambda: Reserved(""))

    def classify(self, name: str, overrides: dict[str, Assignment | None] | None = None) -> Assignment | None:
        """Class of a kit instrument named ``name``: the kit's override, else the first matching rule, else None."""
        if overrides and name in overrides:
            return overrides[name]
        for pattern, assignment in self.rules:
            if pattern.search(name):
                return assignment
        return None

    def names(self, roles: tuple[str, ...] | None = None) -> list[str]:
        """Registered kit and pool names (kits first), optionally only those of the given roles."""
        return [k.name for k in self.kits if roles is None or k.role in roles]

    def entry(self, name: str) -> KitEntry:
        """The registered kit or pool ``name``; an unknown, excluded or reserved name is a :class:`DataError`."""
        for k in self.kits:
            if k.name == name:
                return k
        self.reserved.check(name)
        if name in self.excluded:
            raise DataError(f"kit {name!r} is installed but excluded from the project (not a drum kit, or unused)")
        raise DataError(f"unknown kit {name!r}; known kits: {', '.join(self.names())}")


def load_kitmap(path: str | Path | None = None) -> KitMap:
    """Parse a kit map (default: the package's ``idm/data/kitmap.yaml``)."""
    if path is None:
        text = resources.files("idm.data").joinpath("kitmap.yaml").read_text(encoding="utf-8")
        where = "kitmap.yaml"
    else:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: kit map not found")
        text, where = p.read_text(encoding="utf-8"), str(p)
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise DataError(f"{where}: expected a mapping at the top level")
    loud = {str(k): float(v) for k, v in (d.get("loudness_db") or {}).items()}
    if set(loud) != set(CLASSES):
        raise DataError(f"{where}: loudness_db must give every class: {', '.join(CLASSES)}")
    rules = []
    for i, r in enumerate(d.get("rules") or []):
        try:
            pat = re.compile(r["match"], re.IGNORECASE)
        except (KeyError, re.error) as e:
            raise DataError(f"{where}: rule {i}: bad or missing 'match' ({e})") from None
        rules.append((pat, _assignment({k: v for k, v in r.items() if k != "match"}, f"rule {i}")))
    reserved = _reserved(d.get("reserved"), where)
    kits = []
    for k in d.get("kits") or []:
        name = str(k.get("name", ""))
        if k.get("role") not in ROLES[:3] or k.get("source") not in SOURCES[:3] or not k.get("path"):
            raise DataError(f"{where}: kit {name!r} needs role in {ROLES[:3]}, source in {SOURCES[:3]} and a path")
        if not k.get("license"):
            raise DataError(f"{where}: kit {name!r} has no license")
        ov = {str(n): _assignment(v, f"kit {name!r} override {n!r}") for n, v in (k.get("overrides") or {}).items()}
        sf2_map = _keyspecs(k["map"], f"kit {name!r} map") if k.get("map") else None
        files = _filespecs(k["files"], f"{where}: kit {name!r} files") if k.get("files") else None
        if files is not None and k["source"] != "folder":
            raise DataError(f"{where}: kit {name!r}: 'files' is for kits of source folder")
        kits.append(KitEntry(name, k["role"], k["source"], str(k["path"]), str(k.get("author", "")),
                             str(k["license"]), str(k.get("comment", "")), ov, sf2_map, files))  # fmt: skip
    for k in d.get("pools") or []:
        kits.append(_pool(k, where))
    names = [k.name for k in kits]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{where}: kit or pool {dup[0]!r} is registered twice")
    for k in kits:
        paths = [f"{k.path}/{f}" for specs in (k.files or {}).values() for s in specs for f in s.files]
        for ref in (k.name, *(k.folders or (k.path,)), *paths):
            sound = reserved.which(ref)
            if sound is not None:
                raise DataError(f"{where}: {k.name!r} registers a sound reserved for independent evaluation "
                                f"({sound.package}): {reserved.reason}")  # fmt: skip
    return KitMap(loud, tuple(rules), _keyspecs(d.get("sf2_default") or {}, "sf2_default"), tuple(kits),
                  tuple(str(x) for x in d.get("excluded") or ()), reserved)  # fmt: skip


def _filespecs(m: Any, where: str) -> dict[str, tuple[FileSpec, ...]]:
    if not isinstance(m, dict):
        raise DataError(f"{where}: expected a mapping class -> list of instruments")
    out: dict[str, tuple[FileSpec, ...]] = {}
    for cls, specs in m.items():
        if cls not in CLASSES:
            raise DataError(f"{where}: unknown class {cls!r}; expected one of {', '.join(CLASSES)}")
        lst = []
        for s in specs if isinstance(specs, list) else [specs]:
            if isinstance(s, str):
                s = {"files": [s]}
            elif isinstance(s, list):
                s = {"files": s}
            if not isinstance(s, dict) or not ("file" in s or "files" in s):
                raise DataError(f"{where}: {cls}: expected a file name, a list of them or {{file(s), notes, pitch}}")
            fs = [s["file"]] if "file" in s else list(s["files"])
            if not fs or not all(isinstance(f, str) and f for f in fs):
                raise DataError(f"{where}: {cls}: empty or non-text file names {fs!r}")
            lst.append(FileSpec(tuple(fs), tuple(int(n) for n in s.get("notes", ())), float(s.get("pitch", 0.0))))
        out[cls] = tuple(lst)
    return out


def _pool(k: Any, where: str) -> KitEntry:
    if not isinstance(k, dict):
        raise DataError(f"{where}: a pool must be a mapping with name, folders, license and rules")
    name = str(k.get("name", ""))
    folders = k.get("folders")
    if not name or not isinstance(folders, list) or not folders or not k.get("license"):
        raise DataError(f"{where}: pool {name!r} needs a name, a list of folders and a license")
    rules = []
    for i, r in enumerate(k.get("rules") or []):
        try:
            pat = re.compile(r["match"], re.IGNORECASE)
        except (KeyError, TypeError, re.error) as e:
            raise DataError(f"{where}: pool {name!r} rule {i}: bad or missing 'match' ({e})") from None
        a = _assignment({x: v for x, v in r.items() if x not in ("match", "why")}, f"pool {name!r} rule {i}")
        rules.append(PoolRule(pat, a, str(r.get("why", ""))))
    ov: dict[str, Assignment | None] = {}
    why: dict[str, str] = {}
    for n, v in (k.get("overrides") or {}).items():
        if isinstance(v, dict) and "why" in v:
            why[str(n)] = str(v["why"])
            v = {x: y for x, y in v.items() if x != "why"}
        ov[str(n)] = _assignment(v, f"pool {name!r} override {n!r}")
    layers = tuple(str(x) for x in k.get("velocity_layers") or ())
    return KitEntry(name, "pool", "pool", str(folders[0]), str(k.get("author", "")), str(k["license"]),
                    str(k.get("comment", "")), ov, folders=tuple(str(f) for f in folders), pool_rules=tuple(rules),
                    velocity_layers=layers, why=why)  # fmt: skip


def _reserved(d: Any, where: str) -> Reserved:
    if d is None:
        return Reserved("")
    if not isinstance(d, dict) or not d.get("reason"):
        raise DataError(f"{where}: 'reserved' needs a reason and a list of sounds")
    sounds = []
    for i, s in enumerate(d.get("sounds") or []):
        try:
            pat = re.compile(s["match"], re.IGNORECASE)
            sounds.append(ReservedSound(str(s["package"]), tuple(str(p) for p in s.get("paths") or ()), pat))
        except (KeyError, TypeError, re.error) as e:
            raise DataError(f"{where}: reserved sound {i}: needs a package and a valid 'match' ({e})") from None
    return Reserved(str(d["reason"]), tuple(sounds))


def check_not_reserved(ref: str | Path, what: str = "kit", kitmap: KitMap | None = None) -> None:
    """Raise :class:`DataError` if a kit name, file or folder is a reserved evaluation sound (``kitmap.yaml``)."""
    (kitmap or load_kitmap()).reserved.check(ref, what)
