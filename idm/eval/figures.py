"""Figures of ``idm eval`` results: every system in one summary figure, and onset F per class.

Inputs are what ``idm eval`` writes: ``results.json`` holds every clip's scores, so each number gets a
bootstrap 95 % interval over the clips (resampling clips, recomputing the number exactly as the report
does: mean over clips per class or group, then the macro mean); ``results.md`` holds the tables only, so
its numbers are drawn without error bars (the figure says so). Several inputs are merged when they were
measured on the same sets. Torch-free; matplotlib is imported only to draw.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idm.classes import CLASSES, GROUPS
from idm.errors import IDMError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "HEADLINES",
    "Score",
    "SystemScores",
    "bootstrap_macro",
    "caption",
    "classes_figure",
    "load_scores",
    "scores_from_json",
    "scores_from_markdown",
    "summary_figure",
    "write_figures",
]

#: Headline numbers of the summary figure: key, level, metric, axis label.
HEADLINES: tuple[tuple[str, str, str, str], ...] = (
    ("f50_groups", "groups", "f50", "onset F (±50 ms), mean of 5 groups"),
    ("f50_classes", "classes", "f50", "onset F (±50 ms), mean of 9 classes"),
    ("masked_sdr_groups", "groups", "masked_sdr", "masked SDR (dB), mean of 5 groups"),
)
SUMMARY_SIZE = (1800, 700)
CLASSES_SIZE = (1800, 900)
DPI = 100


@dataclass(frozen=True)
class Score:
    """A number and, when per-clip scores were available, its bootstrap 95 % interval."""

    value: float | None
    lo: float | None = None
    hi: float | None = None


@dataclass
class SystemScores:
    """The drawn numbers of one system on one set."""

    system: str
    set: str
    clips: int
    truth: bool  #: the system's onsets are the ground truth (the oracle): F = 1 by construction
    headline: dict[str, Score]  #: keys of :data:`HEADLINES`
    f50_class: dict[str, Score]  #: per class, and ``mean`` (= ``f50_classes``)
    source: str = ""


@dataclass
class ScoreSet:
    """Merged inputs: scores in input order, the sets' descriptions, whether any number has an interval."""

    scores: list[SystemScores]
    sets: dict[str, str]
    sources: list[str] = field(default_factory=list)
    onset_clips: dict[str, dict[str, int]] = field(default_factory=dict)  #: set -> class -> clips with its onsets
    resamples: int = 0  #: bootstrap resamples behind the intervals (0: none)

    @property
    def has_intervals(self) -> bool:
        return any(s.lo is not None for x in self.scores for s in [*x.headline.values(), *x.f50_class.values()])


# ---- numbers from per-clip scores ------------------------------------------------------------------------------


def _cell(cell: dict[str, Any], metric: str) -> float:
    v = (cell.get("masked") or {}).get("sdr") if metric == "masked_sdr" else cell.get(metric)
    return np.nan if v is None or not np.isfinite(v) else float(v)


def bootstrap_macro(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[Score, list[Score], np.ndarray]:
    """``values`` ``[clips, names]`` (NaN: not scored): the macro mean (over names of the mean over clips).

    Returns the macro :class:`Score`, one per name, and the bootstrap macro means (2.5/97.5 percentiles give
    the intervals; clips are resampled with replacement, names without any scored clip in a resample are left
    out of that resample's macro, as the report leaves them out).
    """
    v = np.asarray(values, dtype=np.float64)
    n, _k = v.shape

    def means(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # x [..., clips, names]
        ok = ~np.isnan(x)
        cnt = ok.sum(axis=-2)
        col = np.where(cnt > 0, np.where(ok, x, 0.0).sum(axis=-2) / np.maximum(cnt, 1), np.nan)
        okc = ~np.isnan(col)
        nk = okc.sum(axis=-1)
        macro = np.where(nk > 0, np.where(okc, col, 0.0).sum(axis=-1) / np.maximum(nk, 1), np.nan)
        return col, macro

    col, macro = means(v)
    if n == 0:
        return Score(None), [Score(None) for _ in range(v.shape[1])], np.zeros(0)
    rng = np.random.default_rng(seed)
    bcol, bmacro = means(v[rng.integers(0, n, size=(n_boot, n))])

    def score(point: float, boot: np.ndarray) -> Score:
        if not np.isfinite(point):
            return Score(None)
        b = boot[np.isfinite(boot)]
        lo, hi = np.percentile(b, [2.5, 97.5]) if b.size else (np.nan, np.nan)
        return Score(float(point), float(lo), float(hi))

    return score(float(macro), bmacro), [score(float(c), bcol[:, i]) for i, c in enumerate(col)], bmacro


def _set_desc(s: dict[str, Any]) -> str:
    return f"{s['clips']} clips of {float(s['clip_seconds']):g} s from GMD `{s['split']}`, kits: {', '.join(s['kits'])}"


def scores_from_json(results: dict[str, Any], source: str = "", n_boot: int = 2000, seed: int = 0) -> ScoreSet:
    """Per-clip ``results.json`` -> scores with bootstrap intervals (same means as ``results.md``)."""
    out = []
    for sys_info in results["systems"]:
        for set_name in results["sets"]:
            rows = [r for r in results["clips"] if r["system"] == sys_info["name"] and r["set"] == set_name]
            if not rows:
                continue
            headline = {}
            per_class: dict[str, Score] = {}
            for key, level, metric, _ in HEADLINES:
                names = GROUPS if level == "groups" else CLASSES
                mat = np.array([[_cell(r[level][nm], metric) for nm in names] for r in rows])
                macro, cols, _b = bootstrap_macro(mat, n_boot, seed)
                headline[key] = macro
                if key == "f50_classes":
                    per_class = dict(zip(CLASSES, cols, strict=True))
                    per_class["mean"] = macro
            out.append(SystemScores(sys_info["name"], set_name, len(rows), any(r["onsets_are_truth"] for r in rows),
                                    headline, per_class, source))  # fmt: skip
    counts: dict[str, dict[str, int]] = {}
    for set_name in results["sets"]:
        rows = [r for r in results["clips"] if r["set"] == set_name]
        first = rows[0]["system"] if rows else None
        counts[set_name] = {c: sum(r["classes"][c]["n_ref_onsets"] > 0 for r in rows if r["system"] == first)
                            for c in CLASSES}  # fmt: skip
    return ScoreSet(out, {k: _set_desc(v) for k, v in results["sets"].items()}, [source], counts, n_boot)


# ---- numbers from the markdown report --------------------------------------------------------------------------


def _md_table(text: str, heading: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    try:
        i = lines.index(f"## {heading}")
    except ValueError:
        raise IDMError(f"no '## {heading}' table (is this an idm eval results.md?)") from None
    rows = []
    while i < len(lines) and not lines[i].startswith("|"):
        i += 1
    table = []
    while i < len(lines) and lines[i].startswith("|"):
        table.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
        i += 1
    if len(table) < 3:
        raise IDMError(f"'## {heading}': empty table")
    head = table[0]
    for cells in table[2:]:
        rows.append(dict(zip(head, cells, strict=True)))
    return rows


def _num(cell: str) -> float | None:
    cell = cell.replace("†", "").strip()
    return None if cell in ("n/a", "") else float(cell)


def scores_from_markdown(text: str, source: str = "") -> ScoreSet:
    """A ``results.md`` report -> its summary and per-class numbers, without intervals (no per-clip scores)."""
    sets = dict(re.findall(r"^- set \*\*(\w+)\*\*: (.+)$", text, flags=re.M))
    if not sets:
        raise IDMError("no '- set **NAME**: ...' lines (is this an idm eval results.md?)")
    columns = {"f50_groups": "F50 groups", "f50_classes": "F50 classes", "masked_sdr_groups": "masked SDR"}
    per_class = {(r["system"], r["set"]): r for r in _md_table(text, "Onset F (50 ms) per class")}
    out = []
    for r in _md_table(text, "Summary"):
        cls_row = per_class.get((r["system"], r["set"]), {})
        f50_class = {c: Score(_num(cls_row[c])) if c in cls_row else Score(None) for c in (*CLASSES, "mean")}
        out.append(SystemScores(r["system"], r["set"], int(r["clips"]), "†" in r["F50 groups"],
                                {k: Score(_num(r[col])) for k, col in columns.items()}, f50_class, source))  # fmt: skip
    counts: dict[str, dict[str, int]] = {}
    try:
        excluded = _md_table(text, "Excluded: silent reference stems / clips without reference onsets")
    except IDMError:
        excluded = []
    for r in excluded:
        if r.get("set") in sets and all(c in r for c in CLASSES):
            counts[r["set"]] = {c: int(r["clips"]) - int(r[c].split("/")[1]) for c in CLASSES}
    return ScoreSet(out, sets, [source], counts)


def load_scores(paths: list[Path], n_boot: int = 2000, seed: int = 0) -> ScoreSet:
    """Read and merge ``results.json`` / ``results.md`` files; they must describe the same sets of clips."""
    merged: ScoreSet | None = None
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise IDMError(f"{path}: cannot read ({e.strerror or e})") from None
        try:
            if Path(path).suffix == ".json":
                part = scores_from_json(json.loads(text), str(path), n_boot, seed)
            else:
                part = scores_from_markdown(text, str(path))
        except (KeyError, ValueError, TypeError) as e:
            raise IDMError(f"{path}: not an idm eval results file ({type(e).__name__}: {e})") from None
        except IDMError as e:
            raise IDMError(f"{path}: {e}") from None
        if merged is None:
            merged = part
            continue
        for name, desc in part.sets.items():
            if name in merged.sets and merged.sets[name] != desc:
                raise IDMError(f"{path}: set {name!r} differs from {merged.sources[0]}'s ({desc} vs "
                               f"{merged.sets[name]}); figures only compare systems on the same clips")  # fmt: skip
            merged.sets.setdefault(name, desc)
        have = {(s.system, s.set) for s in merged.scores}
        dup = [s.system for s in part.scores if (s.system, s.set) in have]
        if dup:
            raise IDMError(f"{path}: system {dup[0]!r} is also in an earlier input; rename it in one of them")
        merged.scores += part.scores
        merged.sources += part.sources
        for name, c in part.onset_clips.items():
            merged.onset_clips.setdefault(name, c)
        merged.resamples = max(merged.resamples, part.resamples)
    if merged is None or not merged.scores:
        raise IDMError("no scores to plot")
    return merged


# ---- drawing ----------------------------------------------------------------------------------------------------


def _bars(ax: Any, x: np.ndarray, width: float, scores: list[Score], **kw: Any) -> Any:
    vals = np.array([np.nan if s.value is None else s.value for s in scores])
    bars = ax.bar(x, vals, width, **kw)
    have = [i for i, s in enumerate(scores) if s.lo is not None and s.value is not None]
    if have:
        lo = np.array([vals[i] - scores[i].lo for i in have])
        hi = np.array([scores[i].hi - vals[i] for i in have])
        ax.errorbar(x[have], vals[have], yerr=[lo, hi], fmt="none", ecolor="black", elinewidth=0.9, capsize=2.5,
                    label="_errorbars")  # fmt: skip
    return bars


def caption(data: ScoreSet) -> str:
    """The figures' footnote: where the error bars come from (or why there are none), the oracle's dagger, the sets."""
    sets = "; ".join(f"{name}: {desc}" for name, desc in data.sets.items())
    with_ci = list(dict.fromkeys(x.system for x in data.scores if any(s.lo is not None for s in x.headline.values())))
    without = [n for n in dict.fromkeys(x.system for x in data.scores) if n not in with_ci]
    if with_ci and not without:
        bars = f"Error bars: bootstrap 95 % intervals over clips ({data.resamples} resamples)."
    elif with_ci:
        bars = (
            f"Error bars (bootstrap 95 % intervals over clips, {data.resamples} resamples) for "
            f"{', '.join(with_ci)} (per-clip results.json); none for {', '.join(without)} (results.md: no "
            "per-clip scores)."
        )
    else:
        bars = "No error bars: these inputs hold no per-clip scores (results.md); idm eval's results.json has them."
    return f"{bars} † oracle: true onsets (F = 1 by construction). Sets: {sets}"


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def summary_figure(data: ScoreSet, title: str, size: tuple[int, int] = SUMMARY_SIZE) -> Figure:
    """One panel per headline number; systems on the x axis, one bar per set (with intervals when known).

    Bar rectangles carry ``gid`` ``"<headline key>/<set>"`` so tests can read the drawn heights.
    """
    from idm.plots import load_matplotlib

    plt = load_matplotlib("evaluation figures")
    systems = list(dict.fromkeys(s.system for s in data.scores))
    sets = list(dict.fromkeys(s.set for s in data.scores))
    fig, axes = plt.subplots(1, len(HEADLINES), figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    width = 0.8 / max(1, len(sets))
    x = np.arange(len(systems))
    for ax, (key, _level, _metric, label) in zip(axes, HEADLINES, strict=True):
        for j, set_name in enumerate(sets):
            found = {s.system: s for s in data.scores if s.set == set_name}
            scores = [found[n].headline[key] if n in found else Score(None) for n in systems]
            bars = _bars(ax, x + (j - (len(sets) - 1) / 2) * width, width, scores, color=f"C{j}", label=set_name)
            for b in bars:
                b.set_gid(f"{key}/{set_name}")
            for b, n, s in zip(bars, systems, scores, strict=True):
                if s.value is not None:
                    mark = "†" if n in found and found[n].truth and key.startswith("f50") else ""
                    y = s.value if s.hi is None else (s.hi if s.value >= 0 else s.lo)
                    off = (0, 2 if s.value >= 0 else -10)
                    ax.annotate(f"{s.value:.2f}{mark}", (b.get_x() + b.get_width() / 2, y), xytext=off,
                                textcoords="offset points", ha="center", fontsize=7)  # fmt: skip
        ax.set_xticks(x, systems)
        ax.set_title(label, fontsize=10)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
        if key.startswith("f50"):
            ax.set_ylim(0, 1.12)
    axes[0].legend(title="set", fontsize=8)
    fig.suptitle(title, fontsize=12)
    fig.text(0.01, 0.01, _wrap(caption(data), 230), fontsize=7.5, va="bottom")
    fig.subplots_adjust(left=0.04, right=0.99, top=0.86, bottom=0.2, wspace=0.18)
    return fig


def classes_figure(data: ScoreSet, title: str, size: tuple[int, int] = CLASSES_SIZE) -> Figure:
    """Onset F (±50 ms) per class and its mean; one panel per set, one bar per system.

    Under each class: the clips of the set with onsets of that class (the others do not count in its F).

    Bar rectangles carry ``gid`` ``"<system>/<set>"``.
    """
    from idm.plots import load_matplotlib

    plt = load_matplotlib("evaluation figures")
    systems = list(dict.fromkeys(s.system for s in data.scores))
    sets = list(dict.fromkeys(s.set for s in data.scores))
    names = [*CLASSES, "mean"]
    fig, axes = plt.subplots(len(sets), 1, figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, squeeze=False)
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(names))
    for ax, set_name in zip(axes[:, 0], sets, strict=True):
        for k, sys_name in enumerate(systems):
            found = [s for s in data.scores if s.system == sys_name and s.set == set_name]
            if not found:
                continue
            s = found[0]
            label = sys_name + (" †" if s.truth else "")
            bars = _bars(ax, x + (k - (len(systems) - 1) / 2) * width, width, [s.f50_class[n] for n in names],
                         color=f"C{k}", label=label)  # fmt: skip
            for b in bars:
                b.set_gid(f"{sys_name}/{set_name}")
        n = data.onset_clips.get(set_name, {})
        ax.set_xticks(x, [f"{c}\n{n[c]} clips" if c in n else c for c in names], fontsize=9)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("onset F (±50 ms)")
        ax.set_title(f"set {set_name}: {data.sets.get(set_name, '')}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.axvline(len(CLASSES) - 0.5, color="0.5", linewidth=0.8)
    axes[0, 0].legend(fontsize=8, ncol=len(systems), loc="upper center")
    fig.suptitle(title, fontsize=12)
    fig.text(0.01, 0.01, _wrap(caption(data), 230), fontsize=7.5, va="bottom")
    fig.subplots_adjust(left=0.05, right=0.99, top=0.9, bottom=0.12, hspace=0.35)
    return fig


def write_figures(data: ScoreSet, out: Path, title: str, prefix: str = "") -> tuple[Path, Path]:
    """``<prefix>summary.png`` and ``<prefix>classes.png`` in ``out``."""
    from idm.plots import save_png

    a = save_png(summary_figure(data, title), out / f"{prefix}summary.png")
    b = save_png(classes_figure(data, f"{title}: onset F per class"), out / f"{prefix}classes.png")
    return a, b
