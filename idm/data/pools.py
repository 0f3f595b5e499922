"""One-shot pools: single drum samples of whole folders (lmms-common, sonic-pi-samples) sorted into the 9 classes.

A pool is registered in ``kitmap.yaml`` (``pools:``) with its folders, ordered file-name rules and
per-file overrides. Loaded, it is a :class:`~idm.data.kits.Kit` of role ``pool``: per class many
instruments of one sample each (or of two velocity layers where a sound has soft and hard
variants), loudness-normalised like kit instruments, that kits can borrow from. A file that a
registered kit uses (the unseen evaluation kits) is never in a pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idm.classes import CLASSES
from idm.data.kitmap import Assignment, KitEntry, KitMap, load_kitmap
from idm.data.kits import (
    _INSTALL_HINT,
    AUDIO_SUFFIXES,
    DEFAULT_KITS_ROOT,
    SAMPLE_RATE,
    Instrument,
    Kit,
    Layer,
    _empty,
    _finish,
    _read,
    normalise,
)
from idm.errors import DataError

__all__ = ["STATUSES", "PoolFile", "classify_pool", "kit_files", "later_attacks", "load_pool", "pooled_kits"]

#: What a pool does with a file: plays it, ignores it (a rule or override says so), leaves it to the
#: evaluation kit that uses it, or ignores it because no rule matches (to be fixed in kitmap.yaml).
STATUSES: tuple[str, ...] = ("used", "ignored", "evaluation", "unmatched")


@dataclass(frozen=True)
class PoolFile:
    """A pool folder's file and what the pool does with it (``status``, one of :data:`STATUSES`), and why."""

    path: Path
    name: str
    status: str
    assignment: Assignment | None = None
    why: str = ""


def kit_files(kitmap: KitMap, root: Path) -> dict[Path, str]:
    """Resolved paths of the one-shot files that registered folder kits name, to the kit's name."""
    out: dict[Path, str] = {}
    for k in kitmap.kits:
        if k.files is None:
            continue
        folder = k.location(root)
        for specs in k.files.values():
            for spec in specs:
                for f in spec.files:
                    out[(folder / f).resolve()] = k.name
    return out


def _entry(pool: KitEntry | str, km: KitMap) -> KitEntry:
    entry = km.entry(pool) if isinstance(pool, str) else pool
    if entry.source != "pool":
        raise DataError(f"{entry.name!r} is a kit, not a one-shot pool")
    return entry


def classify_pool(pool: KitEntry | str, root: str | Path | None = None, kitmap: KitMap | None = None) -> list[PoolFile]:
    """Every audio file of a pool's folders and what the pool does with it, in folder then name order.

    Parameters
    ----------
    pool
        A registered pool name or its :class:`~idm.data.kitmap.KitEntry`.
    root
        Kits root (default ``/usr/share``).
    kitmap
        Default: the package's ``kitmap.yaml``.
    """
    km = kitmap or load_kitmap()
    entry = _entry(pool, km)
    base = Path(root) if root is not None else DEFAULT_KITS_ROOT
    taken = kit_files(km, base)
    out: list[PoolFile] = []
    for folder in entry.locations(base):
        km.reserved.check(folder, "pool folder")
        if not folder.is_dir():
            raise DataError(f"pool {entry.name!r}: folder {folder} not found: {_INSTALL_HINT}")
        for p in sorted(q for q in folder.iterdir() if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES):
            km.reserved.check(p, "sample")
            name = p.stem
            if p.resolve() in taken:
                out.append(PoolFile(p, name, "evaluation", None, f"used by the kit {taken[p.resolve()]!r}"))
                continue
            if name in entry.overrides:
                a = entry.overrides[name]
                why = entry.why.get(name, "override")
                out.append(PoolFile(p, name, "used" if a is not None else "ignored", a, why))
                continue
            for rule in entry.pool_rules:
                if rule.pattern.search(name):
                    status = "used" if rule.assignment is not None else "ignored"
                    out.append(PoolFile(p, name, status, rule.assignment, rule.why or f"rule {rule.pattern.pattern!r}"))
                    break
            else:
                out.append(PoolFile(p, name, "unmatched", None, "no rule matches"))
    return out


def _split_layer(name: str, suffixes: tuple[str, ...]) -> tuple[str, int]:
    """``snare_soft`` -> (``snare``, 0) for suffixes (soft, hard); names without one -> (name, -1)."""
    for i, s in enumerate(suffixes):
        if name.lower().endswith("_" + s.lower()):
            return name[: -len(s) - 1], i
    return name, -1


def load_pool(
    pool: KitEntry | str,
    root: str | Path | None = None,
    kitmap: KitMap | None = None,
    normalise_loudness: bool = True,
) -> Kit:
    """Load a registered pool as a kit of role ``pool`` (see the module docstring).

    Files ``NAME_<suffix>`` for the pool's ``velocity_layers`` suffixes (e.g. soft, hard) that go to
    the same class become one instrument ``NAME`` with those layers, softest first, tiling 0-1.
    """
    km = kitmap or load_kitmap()
    entry = _entry(pool, km)
    files = [f for f in classify_pool(entry, root, km) if f.status == "used"]
    groups: dict[tuple[str, str, tuple[int, ...], float], list[tuple[int, PoolFile]]] = {}
    for f in files:
        assert f.assignment is not None
        a = f.assignment
        base, order = _split_layer(f.name, entry.velocity_layers) if entry.velocity_layers else (f.name, -1)
        key = (a.cls, base if order >= 0 else f.name, a.notes, a.pitch)
        groups.setdefault(key, []).append((order, f))
    out = _empty()
    for (cls, label, notes, pitch), members in groups.items():
        members.sort(key=lambda t: t[0])
        n = len(members)
        layers = tuple(Layer(_read(f.path, pitch), j / n, (j + 1) / n, 1.0) for j, (_, f) in enumerate(members))
        out[cls].append(Instrument(label, layers, notes))
    inst = _finish(out)
    if not any(inst.values()):
        raise DataError(f"pool {entry.name!r}: no file of its folders is classified (see its rules in kitmap.yaml)")
    return Kit(
        name=entry.name,
        license=entry.license,
        instruments=normalise(inst, km) if normalise_loudness else inst,
        author=entry.author,
        role="pool",
        source=", ".join(str(p) for p in entry.locations(Path(root) if root is not None else DEFAULT_KITS_ROOT)),
        comment=entry.comment,
    )


def later_attacks(
    audio: np.ndarray,
    rise_db: float = 6.0,
    within_db: float = 20.0,
    after_s: float = 0.05,
) -> list[float]:
    """Times (s) of attacks after the first one: a one-shot has none, a loop or a double hit has some.

    An attack is the 30 ms RMS level (5 ms hops) rising by ``rise_db`` within 10 ms to within
    ``within_db`` of the sample's loudest level, later than ``after_s``; attacks closer than
    25 ms to the previous one count once. Times are within about 10 ms.
    """
    x = np.asarray(audio, dtype=np.float64)
    hop, win = SAMPLE_RATE // 200, round(0.03 * SAMPLE_RATE)
    if x.size < win + 2 * hop:
        return []
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, x.size - win, hop)
    level = 10.0 * np.log10((c[starts + win] - c[starts]) / win + 1e-20)
    level -= level.max()
    rise = level[2:] - level[:-2]
    hits = np.flatnonzero((rise >= rise_db) & (level[2:] >= -within_db) & (starts[2:] >= after_s * SAMPLE_RATE))
    out: list[float] = []
    last = -10
    for i in hits:
        if i - last > 4:
            out.append(float(starts[i + 2] + win) / SAMPLE_RATE)  # the window's end reached the attack
        last = int(i)
    return out


def pooled_kits(sources: list[Kit], n: int, seed: int) -> dict[str, Kit]:
    """``n`` kits drawn class by class: each class plays one instrument drawn evenly from every instrument of that
    class in ``sources`` (the general ones, see :meth:`Kit.main`); kit ``i`` depends on ``(seed, i)`` alone."""
    choices = {cls: [ins for k in sources for ins in k.main(cls)] for cls in CLASSES}
    out: dict[str, Kit] = {}
    for i in range(n):
        rng = np.random.default_rng([seed, 0x9001ED, i])
        instruments: dict[str, tuple[Instrument, ...]] = {}
        for cls in CLASSES:
            if choices[cls]:
                instruments[cls] = (choices[cls][int(rng.integers(len(choices[cls])))],)
        name = f"pooled {i + 1:03d}"
        out[name] = Kit(name, "the sources' licenses", instruments, role="pooled",
                        source=", ".join(k.name for k in sources))  # fmt: skip
    return out
