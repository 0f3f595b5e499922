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

__all__ = ["ROLES", "Assignment", "KeySpec", "KitEntry", "KitMap", "load_kitmap"]

#: Kit roles: trained on (acoustic), trained on as augmentation (electronic), held out.
ROLES: tuple[str, ...] = ("training", "augmentation", "validation")
SOURCES: tuple[str, ...] = ("hydrogen", "sf2", "folder")


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
class KitEntry:
    """One registered kit: where it is (relative to the kits root), its role, credit and mapping."""

    name: str
    role: str
    source: str
    path: str
    author: str
    license: str
    comment: str = ""
    overrides: dict[str, Assignment | None] = field(default_factory=dict)
    sf2_map: dict[str, tuple[KeySpec, ...]] | None = None

    def location(self, root: Path) -> Path:
        """File or folder of this kit under a kits root such as ``/usr/share``."""
        if self.source == "hydrogen":
            return root / "hydrogen" / "data" / "drumkits" / self.path
        if self.source == "sf2":
            return root / "sounds" / "sf2" / self.path
        return root / self.path


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

    def classify(self, name: str, overrides: dict[str, Assignment | None] | None = None) -> Assignment | None:
        """Class of a kit instrument named ``name``: the kit's override, else the first matching rule, else None."""
        if overrides and name in overrides:
            return overrides[name]
        for pattern, assignment in self.rules:
            if pattern.search(name):
                return assignment
        return None

    def names(self, roles: tuple[str, ...] | None = None) -> list[str]:
        """Registered kit names, optionally only those of the given roles."""
        return [k.name for k in self.kits if roles is None or k.role in roles]

    def entry(self, name: str) -> KitEntry:
        """The registered kit ``name``; an unknown or excluded name is a :class:`DataError` naming the valid ones."""
        for k in self.kits:
            if k.name == name:
                return k
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
    kits = []
    for k in d.get("kits") or []:
        name = str(k.get("name", ""))
        if k.get("role") not in ROLES or k.get("source") not in SOURCES or not k.get("path"):
            raise DataError(f"{where}: kit {name!r} needs role in {ROLES}, source in {SOURCES} and a path")
        if not k.get("license"):
            raise DataError(f"{where}: kit {name!r} has no license")
        ov = {str(n): _assignment(v, f"kit {name!r} override {n!r}") for n, v in (k.get("overrides") or {}).items()}
        sf2_map = _keyspecs(k["map"], f"kit {name!r} map") if k.get("map") else None
        kits.append(KitEntry(name, k["role"], k["source"], str(k["path"]), str(k.get("author", "")),
                             str(k["license"]), str(k.get("comment", "")), ov, sf2_map))  # fmt: skip
    return KitMap(loud, tuple(rules), _keyspecs(d.get("sf2_default") or {}, "sf2_default"), tuple(kits),
                  tuple(str(x) for x in d.get("excluded") or ()))  # fmt: skip
