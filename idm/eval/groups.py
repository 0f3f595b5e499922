"""Class-to-group reductions for scoring: stems summed per group, onsets united and merged per group."""

from __future__ import annotations

import numpy as np

from idm.classes import CLASSES, GROUP_OF, GROUPS

__all__ = ["MERGE_S", "group_onsets", "group_stems", "merge_onsets"]

#: Onsets closer than this (s) count as one hit (flams of two notes of one class, several classes of a group).
MERGE_S = 0.005


def merge_onsets(times: np.ndarray, tolerance: float = MERGE_S) -> np.ndarray:
    """Sorted onset times with every run of onsets less than ``tolerance`` apart kept as its first onset."""
    t = np.sort(np.asarray(times, dtype=np.float64).reshape(-1))
    if t.size < 2:
        return t
    keep = np.concatenate([[True], np.diff(t) >= tolerance])
    return t[keep]


def group_stems(stems: np.ndarray) -> np.ndarray:
    """``[9, N]`` class stems (project order) -> ``[5, N]`` group stems (:data:`GROUPS` order), summed."""
    if stems.shape[0] != len(CLASSES):
        raise ValueError(f"expected {len(CLASSES)} class stems, got {stems.shape[0]}")
    out = np.zeros((len(GROUPS), stems.shape[-1]), dtype=np.float64)
    for k, g in enumerate(GROUP_OF):
        out[GROUPS.index(g)] += stems[k]
    return out


def group_onsets(onsets: list[np.ndarray], tolerance: float = MERGE_S) -> list[np.ndarray]:
    """Per-class onset times (project order) -> per-group times: the union of the group's classes, merged."""
    if len(onsets) != len(CLASSES):
        raise ValueError(f"expected onsets of {len(CLASSES)} classes, got {len(onsets)}")
    out = []
    for g in GROUPS:
        parts = [np.asarray(onsets[k], dtype=np.float64).reshape(-1) for k in range(len(CLASSES)) if GROUP_OF[k] == g]
        out.append(merge_onsets(np.concatenate(parts), tolerance))
    return out
