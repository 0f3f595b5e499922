"""The drum class vocabulary: project order, General MIDI notes, 5-stem groups, official codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLASSES",
    "GM_NOTES",
    "GROUPS",
    "GROUP_OF",
    "OFFICIAL_CODES",
    "DrumClass",
    "class_index",
    "class_permutation",
    "group_sum",
    "official_to_project",
]


@dataclass(frozen=True)
class DrumClass:
    """One drum class of the project's vocabulary."""

    name: str
    official: str
    gm_note: int
    group: str


_TABLE: tuple[DrumClass, ...] = (
    DrumClass("kick", "KD", 36, "kick"),
    DrumClass("snare", "SD", 38, "snare"),
    DrumClass("hihat_closed", "HH_CHH", 42, "hihat"),
    DrumClass("hihat_open", "HH_OHH", 46, "hihat"),
    DrumClass("tom_floor", "TT_HFT", 43, "toms"),
    DrumClass("tom_mid", "TT_LMT", 47, "toms"),
    DrumClass("tom_high", "TT_HMT", 50, "toms"),
    DrumClass("crash", "CY_CR", 49, "cymbals"),
    DrumClass("ride", "CY_RD", 51, "cymbals"),
)

#: Class names in project order (files, MIDI, manifests).
CLASSES: tuple[str, ...] = tuple(c.name for c in _TABLE)
#: General MIDI drum note per class, project order.
GM_NOTES: tuple[int, ...] = tuple(c.gm_note for c in _TABLE)
#: The 5 stem groups, in output order.
GROUPS: tuple[str, ...] = ("kick", "snare", "toms", "hihat", "cymbals")
#: Group name of each class, project order.
GROUP_OF: tuple[str, ...] = tuple(c.group for c in _TABLE)
#: Official class code -> project class name.
OFFICIAL_CODES: dict[str, str] = {c.official: c.name for c in _TABLE}


def class_index(name: str) -> int:
    """Project index of a class name; raises ``KeyError`` naming the valid names."""
    try:
        return CLASSES.index(name)
    except ValueError:
        raise KeyError(f"unknown drum class {name!r}; expected one of {', '.join(CLASSES)}") from None


def class_permutation(model_classes: tuple[str, ...] | list[str]) -> list[int]:
    """Indices ``p`` such that ``model_output[p]`` is in project order (:data:`CLASSES`)."""
    return [list(model_classes).index(c) for c in CLASSES]


def group_sum(stems: Any) -> Any:
    """Per-class stems ``[9, ...]`` (project order) summed into the 5 groups ``[5, ...]`` (:data:`GROUPS` order)."""
    import numpy as np

    x = np.asarray(stems)
    out = np.zeros((len(GROUPS), *x.shape[1:]), dtype=x.dtype)
    np.add.at(out, np.array([GROUPS.index(g) for g in GROUP_OF]), x)
    return out


def official_to_project(codes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Map official class codes (e.g. ``CY_CR``) to project class names, keeping their order."""
    out = []
    for code in codes:
        if code not in OFFICIAL_CODES:
            raise KeyError(f"unknown official class code {code!r}; expected one of {', '.join(OFFICIAL_CODES)}")
        out.append(OFFICIAL_CODES[code])
    return tuple(out)


#: General MIDI / Roland TD-11 (Groove MIDI Dataset) drum notes -> project class, the usual
#: 22-to-9 reduction (pedal hat and rim/edge articulations fold into their instrument).
GM_TO_CLASS: dict[int, str] = {
    35: "kick", 36: "kick",
    37: "snare", 38: "snare", 40: "snare",
    42: "hihat_closed", 22: "hihat_closed", 44: "hihat_closed",
    46: "hihat_open", 26: "hihat_open",
    43: "tom_floor", 58: "tom_floor", 41: "tom_floor",
    45: "tom_mid", 47: "tom_mid",
    48: "tom_high", 50: "tom_high",
    49: "crash", 55: "crash", 57: "crash", 52: "crash",
    51: "ride", 59: "ride", 53: "ride",
}  # fmt: skip
__all__ += ["GM_TO_CLASS"]


def parse_class_values(text: str, what: str = "value", lo: float = 0.0, hi: float = 1.0) -> float | dict[str, float]:
    """``0.3`` (every class) or ``crash=0.6,hihat_open=0.7`` (those classes) -> a number or a class -> number map.

    Raises :class:`ValueError` with a one-line message (unknown class, not a number, outside ``[lo, hi]``).
    """
    import math

    def num(s: str, where: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"{what} {where!r}: not a number") from None
        if not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"{what} {where!r}: must be within {lo:g}..{hi:g}")
        return v

    text = text.strip()
    if "=" not in text:
        return num(text, text)
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in CLASSES:
            raise ValueError(f"{what} {part.strip()!r}: expected CLASS=VALUE with CLASS one of {', '.join(CLASSES)}")
        out[name] = num(value.strip(), part.strip())
    return out
