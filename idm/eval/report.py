"""Aggregate per-clip scores (means over clips, macro means over classes and groups) into markdown tables.

Every (system, set) is summarised pooled over its clips and, in ``kits``, per kit of the set. Figures are
drawn by :mod:`idm.eval.figures`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from idm.classes import CLASSES, GROUPS

__all__ = ["summarize", "write_markdown"]

_STEM_METRICS = ("sdr", "si_sdr", "lsd")


def _mean(values: list[float]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def _aggregate(rows: list[dict[str, Any]], names: tuple[str, ...], level: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        cells = [r[level][name] for r in rows]
        agg: dict[str, Any] = {
            "clips": len(cells),
            "silent": sum(c["silent"] for c in cells),
            "no_onsets": sum(c["n_ref_onsets"] == 0 for c in cells),
        }
        for key in ("f50", "f20", "p50", "r50", "p20", "r20"):
            agg[key] = _mean([c[key] for c in cells if c[key] is not None])
        for kind in ("masked", "synth"):
            scored = [c[kind] for c in cells if c[kind] is not None]
            agg[kind] = {m: _mean([s[m] for s in scored]) for m in _STEM_METRICS} if scored else None
        out[name] = agg
    return out


def _macro(per: dict[str, dict[str, Any]], key: str, metric: str | None = None) -> float | None:
    vals = []
    for agg in per.values():
        v = agg[key] if metric is None else (agg[key] or {}).get(metric)
        if v is not None:
            vals.append(v)
    return float(np.mean(vals)) if vals else None


def _macros(classes: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    macro = {
        "f50_classes": _macro(classes, "f50"),
        "f50_groups": _macro(groups, "f50"),
        "f20_classes": _macro(classes, "f20"),
        "f20_groups": _macro(groups, "f20"),
    }
    for kind in ("masked", "synth"):
        for m in _STEM_METRICS:
            macro[f"{kind}_{m}_groups"] = _macro(groups, kind, m)
            macro[f"{kind}_{m}_classes"] = _macro(classes, kind, m)
    return macro


def _per_kit(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Clips and macro means per kit (the clip's ``kit``), in first-seen order."""
    out: dict[str, dict[str, Any]] = {}
    for kit in dict.fromkeys(r.get("clip", {}).get("kit", "?") for r in rows):
        sub = [r for r in rows if r.get("clip", {}).get("kit", "?") == kit]
        out[kit] = {"clips": len(sub), "macro": _macros(_aggregate(sub, CLASSES, "classes"),
                                                        _aggregate(sub, GROUPS, "groups"))}  # fmt: skip
    return out


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One summary per (system, set) in run order: per-class and per-group means, macro means, time per clip.

    ``kits`` holds the clip count and macro means per kit of the set.
    """
    out = []
    for sys_info in results["systems"]:
        for set_name in results["sets"]:
            rows = [r for r in results["clips"] if r["system"] == sys_info["name"] and r["set"] == set_name]
            if not rows:
                continue
            classes = _aggregate(rows, CLASSES, "classes")
            groups = _aggregate(rows, GROUPS, "groups")
            macro = _macros(classes, groups)
            out.append({
                "system": sys_info["name"],
                "kind": sys_info["kind"],
                "set": set_name,
                "clips": len(rows),
                "seconds_per_clip": float(np.mean([r["seconds"] for r in rows])),
                "onsets_are_truth": any(r["onsets_are_truth"] for r in rows),
                "classes": classes,
                "groups": groups,
                "macro": macro,
                "kits": _per_kit(rows),
            })  # fmt: skip
    return out


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def write_markdown(results: dict[str, Any], summary: list[dict[str, Any]], path: str | Path) -> None:
    """Tables per system and set: summary, SDR per group, onset F per class and group, silent counts."""
    meta = results["meta"]
    truth = "†"
    lines = ["# idm eval", ""]
    lines.append(f"Command: `{meta['command']}`")
    lines.append("")
    for name, s in results["sets"].items():
        kits = (f"a kit of its own per clip, drawn class by class from {', '.join(s['pooled_from'])}"
                if "pooled_from" in s else f"kits: {', '.join(s['kits'])}")  # fmt: skip
        lines.append(f"- set **{name}**: {s['clips']} clips of {s['clip_seconds']:g} s from GMD `{s['split']}`, {kits}")
    for s in results["systems"]:
        lines.append(f"- system **{s['name']}**: `{s['spec']}` ({s['kind']})")
    lines += [
        "",
        "SDR = mean-removed SNR (dB); SI-SDR (dB); LSD = log-spectral distance (dB, STFT 2048/512, lower is better). "
        "Stem metrics skip silent references (counted below); onset F (mir_eval, ±50 ms / ±20 ms) skips a class "
        "in clips where it has no reference onsets (counted below). Means are over clips per class or group, then "
        "macro over the 9 classes or 5 groups. Groups sum class stems and unite (merge within 5 ms) class onsets. "
        f"{truth} the oracle's onsets are the ground truth (F = 1 by construction). n/a: the system has no such "
        "output (the mixture and the oracle have no synthesized stems).",
        "",
        "## Summary",
        "",
    ]
    head = ["system", "set", "clips", "F50 groups", "F50 classes", "F20 groups", "F20 classes", "masked SDR",
            "synth SDR", "masked SI-SDR", "synth SI-SDR", "masked LSD", "synth LSD", "s/clip"]  # fmt: skip
    rows = []
    for s in summary:
        m, t = s["macro"], truth if s["onsets_are_truth"] else ""
        rows.append([s["system"], s["set"], str(s["clips"]),
                     _f(m["f50_groups"], 3) + t, _f(m["f50_classes"], 3) + t,
                     _f(m["f20_groups"], 3) + t, _f(m["f20_classes"], 3) + t,
                     _f(m["masked_sdr_groups"]), _f(m["synth_sdr_groups"]),
                     _f(m["masked_si_sdr_groups"]), _f(m["synth_si_sdr_groups"]),
                     _f(m["masked_lsd_groups"]), _f(m["synth_lsd_groups"]),
                     f"{s['seconds_per_clip']:.2f}"])  # fmt: skip
    lines += _table(head, rows)
    lines += ["SDR, SI-SDR and LSD in this table are means over the 5 groups.", ""]

    rows = []
    for s in summary:
        t = truth if s["onsets_are_truth"] else ""
        drawn = "pooled_from" in results["sets"].get(s["set"], {})  # a kit per clip: no per-kit table
        for kit, k in s.get("kits", {}).items() if not drawn else ():
            m = k["macro"]
            rows.append([s["system"], s["set"], kit, str(k["clips"]), _f(m["f50_groups"], 3) + t,
                         _f(m["f50_classes"], 3) + t, _f(m["f20_groups"], 3) + t, _f(m["masked_sdr_groups"]),
                         _f(m["synth_sdr_groups"]), _f(m["masked_lsd_groups"])])  # fmt: skip
    if rows:
        lines += ["## Per kit", ""]
        lines += _table(["system", "set", "kit", "clips", "F50 groups", "F50 classes", "F20 groups", "masked SDR",
                         "synth SDR", "masked LSD"], rows)  # fmt: skip
        lines += ["Means over the kit's clips, then over the 5 groups or 9 classes (SDR, LSD: over the groups).", ""]

    def per(title: str, level: str, names: tuple[str, ...], get: Any, macro_key: str, digits: int) -> None:
        nonlocal lines
        lines += [f"## {title}", ""]
        rows = []
        for s in summary:
            t = truth if s["onsets_are_truth"] and macro_key.startswith("f") else ""
            cells = [_f(get(s[level][n]), digits) + (t if get(s[level][n]) is not None else "") for n in names]
            rows.append([s["system"], s["set"], *cells, _f(s["macro"][macro_key], digits) + t])
        lines += _table(["system", "set", *names, "mean"], rows)

    def stem(kind: str, metric: str) -> Any:
        return lambda a: (a[kind] or {}).get(metric)

    per("Masked SDR per group (dB)", "groups", GROUPS, stem("masked", "sdr"), "masked_sdr_groups", 2)
    per("Synthesized SDR per group (dB)", "groups", GROUPS, stem("synth", "sdr"), "synth_sdr_groups", 2)
    per("Onset F (50 ms) per group", "groups", GROUPS, lambda a: a["f50"], "f50_groups", 3)
    per("Onset F (50 ms) per class", "classes", CLASSES, lambda a: a["f50"], "f50_classes", 3)
    per("Onset F (20 ms) per class", "classes", CLASSES, lambda a: a["f20"], "f20_classes", 3)
    per("Masked SDR per class (dB)", "classes", CLASSES, stem("masked", "sdr"), "masked_sdr_classes", 2)
    per("Synthesized SDR per class (dB)", "classes", CLASSES, stem("synth", "sdr"), "synth_sdr_classes", 2)

    lines += ["## Excluded: silent reference stems / clips without reference onsets", ""]
    first: dict[str, dict[str, Any]] = {}
    for s in summary:
        first.setdefault(s["set"], s)
    for level, names in (("classes", CLASSES), ("groups", GROUPS)):
        rows = [[name, str(s["clips"]), *[f"{s[level][n]['silent']} / {s[level][n]['no_onsets']}" for n in names]]
                for name, s in first.items()]  # fmt: skip
        lines += _table(["set", "clips", *names], rows)
    Path(path).write_text("\n".join(lines), encoding="utf-8")
