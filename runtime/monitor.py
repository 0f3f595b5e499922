"""Monitoring: mixes chosen stems (and the input) onto output channels and feeds the output ring."""

from __future__ import annotations

import numpy as np
from idm.runtime.ring import RingBuffer
from idm.runtime.sources import Resampler

from idm.classes import CLASSES, GROUP_OF, GROUPS
from idm.errors import IDMError

__all__ = ["INPUT", "REPLACED", "Monitor", "monitor_names", "parse_monitor"]

INPUT = len(CLASSES)  #: row of the input signal in the mixing matrix (after the 9 stems)
REPLACED = INPUT + 1  #: row of the replaced mix (``--replace``)


def monitor_names(spec: str) -> set[str]:
    """The sources a ``--monitor`` text names (``kick``, ``input``, ``replaced``...), lower case, channels dropped."""
    return {item.partition("@")[0].strip().lower() for item in spec.split(",") if item.strip()}


def parse_monitor(spec: str, channels: int) -> np.ndarray:
    """``--monitor`` text -> mixing matrix ``[channels, 11]`` (9 stems in project order, the input, the replaced mix).

    ``spec`` is a comma-separated list of ``NAME`` or ``NAME@CH``: NAME is a class (``kick``,
    ``hihat_open``...), a group (``toms``, ``hihat``, ``cymbals``...), ``all`` (every stem), ``input``
    (the signal coming in) or ``replaced`` (the drum replacement's mix, ``--replace``); CH is a 1-based output
    channel (default: every channel); ``replaced@1,replaced@2`` names two.

    Raises
    ------
    IDMError
        Unknown name or channel out of range (one line naming the item).
    """
    mix = np.zeros((channels, REPLACED + 1), dtype=np.float32)
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise IDMError("--monitor: nothing to monitor (give stem names, 'all' or 'input')")
    for item in items:
        name, _, ch = item.partition("@")
        name = name.strip().lower()
        if name == "all":
            rows = list(range(INPUT))
        elif name == "input":
            rows = [INPUT]
        elif name == "replaced":
            rows = [REPLACED]
        elif name in CLASSES:
            rows = [CLASSES.index(name)]
        elif name in GROUPS:
            rows = [k for k, g in enumerate(GROUP_OF) if g == name]
        else:
            names = ", ".join((*CLASSES, *[g for g in GROUPS if g not in CLASSES], "all", "input", "replaced"))
            raise IDMError(f"--monitor: unknown stem {name!r}; expected one of {names}")
        if ch:
            if not ch.strip().isdigit() or not 1 <= int(ch) <= channels:
                raise IDMError(f"--monitor: channel {ch!r} of {item!r} is not in 1..{channels}")
            outs = [int(ch) - 1]
        else:
            outs = list(range(channels))
        for o in outs:
            mix[o, rows] = 1.0
    return mix


class Monitor:
    """Writes ``mix @ [stems; input]`` for each processed block into the output ring at the device rate.

    Output sample ``t`` of the processor goes to ring position ``t`` (scaled to the device rate), so the
    output callback, reading a constant delay behind its own position, plays everything with a fixed
    latency: the input after the stream delay, the stems ``latency`` samples later.
    """

    def __init__(self, ring: RingBuffer, mix: np.ndarray, model_rate: int, device_rate: int) -> None:
        if mix.shape != (ring.channels, REPLACED + 1):
            raise ValueError(f"mixing matrix must be [{ring.channels}, {REPLACED + 1}], got {list(mix.shape)}")
        self.ring = ring
        self.mix = mix.astype(np.float32)
        self._stems = self.mix[:, :INPUT]
        self._input = self.mix[:, INPUT]
        self._replaced = self.mix[:, REPLACED]
        self._resample = Resampler(model_rate, device_rate, quality="LQ", channels=ring.channels)

    def write(self, stems: np.ndarray | None, x: np.ndarray, replaced: np.ndarray | None = None) -> None:
        """Mix one block (``stems`` ``[9, n]`` or None, input ``x`` ``[n]``, the replaced mix ``[n]`` or None, at the
        model rate) into the ring."""
        out = np.outer(self._input, x)
        if stems is not None:
            out += self._stems @ stems
        if replaced is not None:
            out += np.outer(self._replaced, replaced)
        frames = self._resample(np.ascontiguousarray(out.T))
        if frames.shape[0]:
            self.ring.write(np.ascontiguousarray(frames))

    def finish(self) -> None:
        """End of input: flush the resamplers into the ring."""
        frames = self._resample(np.zeros((0, self.ring.channels), np.float32), last=True)
        if frames.shape[0]:
            self.ring.write(np.ascontiguousarray(frames))
