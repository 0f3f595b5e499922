"""Training examples without torch: random GMD crop + random kit + augmentations, deterministic per index."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from idm.classes import CLASSES
from idm.data.gmd import SPLITS, Events, GrooveMidi, Performance
from idm.data.kitmap import load_kitmap
from idm.data.kits import SAMPLE_RATE, Kit, load_kits
from idm.data.plan import RenderPlan, plan_render
from idm.data.render import RenderAugment, RenderResult, render
from idm.data.targets import HOP
from idm.errors import DataError

__all__ = ["Example", "ExampleSampler", "TrainDataConfig", "kit_target", "training_kit_names"]


def training_kit_names() -> tuple[str, ...]:
    """Names of the registered training kits (roles training and augmentation)."""
    return tuple(load_kitmap().names(("training", "augmentation")))


@dataclass
class TrainDataConfig:
    """What :class:`~idm.data.dataset.RenderedDataset` renders.

    Parameters
    ----------
    gmd_root
        Groove MIDI Dataset root (the folder with ``info.csv``), or a data pack's ``gmd`` folder.
    kits
        Registered kit names; an item's ``kit`` is the index in this list.
    split
        GMD split: ``train``, ``validation`` (never ``test`` for training or tuning).
    crop_seconds
        Example length; rounded to a multiple of the 256-sample hop.
    examples_per_epoch
        Dataset length.
    seed
        Item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``.
    augment
        Render augmentations (None: plain renders, e.g. for validation).
    stems
        Also render the ``[9, N]`` stems (evaluation only; the model never trains on them).
    kits_root
        Where kits are: the Debian root (default ``/usr/share``) or a data pack folder.
    preroll_seconds
        Hits up to this long before a crop are rendered too, so that their tails ring into it.
    max_tries
        Crops without a hit the kit can play are redrawn up to this many times.
    pools
        Registered one-shot pools (role ``pool``) that ``augment``'s pool draws take instruments from,
        besides every instrument of ``kits``.
    realism
        Recording-realism effects (``idm.data.effects.RealismConfig``) applied on the training device after
        rendering, or None.
    """

    gmd_root: str | Path
    kits: tuple[str, ...] = field(default_factory=training_kit_names)
    split: str = "train"
    crop_seconds: float = 6.0
    examples_per_epoch: int = 10_000
    seed: int = 0
    augment: RenderAugment | None = field(default_factory=RenderAugment)
    stems: bool = False
    kits_root: str | Path | None = None
    preroll_seconds: float = 3.0
    max_tries: int = 20
    pools: tuple[str, ...] = ()
    realism: Any = None

    @property
    def n_samples(self) -> int:
        """Crop length in samples: ``crop_seconds`` at 44.1 kHz rounded to a multiple of the hop (at least one hop)."""
        return max(1, round(self.crop_seconds * SAMPLE_RATE / HOP)) * HOP

    def validate(self) -> None:
        """Raise :class:`DataError` on an unusable setting."""
        if self.split not in SPLITS:
            raise DataError(f"split {self.split!r} is not one of {', '.join(SPLITS)}")
        if not self.crop_seconds > 0:
            raise DataError(f"crop_seconds must be positive, got {self.crop_seconds}")
        if self.examples_per_epoch < 1:
            raise DataError(f"examples_per_epoch must be at least 1, got {self.examples_per_epoch}")
        if not self.kits:
            raise DataError("no kits given")
        if self.preroll_seconds < 0 or self.max_tries < 1:
            raise DataError("preroll_seconds must be >= 0 and max_tries >= 1")


def kit_target(sources: np.ndarray, present: np.ndarray) -> int:
    """Kit-classifier target of an example: the kit that plays at least half of its present classes, else -1.

    ``sources[c]`` is the kit index playing class ``c`` (negative: a pool or procedural voice);
    ``present[c]`` whether class ``c`` has hits. -1 (the kit loss ignores it) when no kit plays half.
    """
    src = sources[present]
    if src.size == 0:
        return -1
    kits, counts = np.unique(src[src >= 0], return_counts=True)
    if counts.size == 0:
        return -1
    best = int(np.argmax(counts))
    return int(kits[best]) if 2 * counts[best] >= src.size else -1


@dataclass(eq=False)
class Example:
    """One rendered example and where it came from."""

    render: RenderResult
    kit_index: int
    performance: Performance
    offset_s: float


class ExampleSampler:
    """Draws examples for a :class:`TrainDataConfig`; kits and MIDI are loaded on first use (or by :meth:`prepare`).

    Performances are drawn with probability proportional to their duration, offsets uniformly.
    """

    def __init__(self, config: TrainDataConfig, kits: list[Kit] | None = None) -> None:
        config.validate()
        self.config = config
        self.gmd = GrooveMidi(config.gmd_root)
        self.performances = self.gmd.split(config.split)
        if not self.performances:
            raise DataError(f"{self.gmd.root}: the {config.split!r} split has no performances")
        d = np.array([max(p.duration, 1e-3) for p in self.performances])
        self._p = d / d.sum()
        self._kits = list(kits) if kits is not None else None
        if self._kits is not None and not self._kits:
            raise DataError("an empty kit list was given")
        self.kit_names = tuple(k.name for k in self._kits) if self._kits is not None else tuple(config.kits)
        self._pools: list[Kit] | None = None

    @property
    def kits(self) -> list[Kit]:
        """The kits (loaded on first use)."""
        if self._kits is None:
            self._kits = load_kits(self.kit_names, self.config.kits_root)
        return self._kits

    @property
    def pools(self) -> list[Kit]:
        """The one-shot pools (loaded on first use)."""
        if self._pools is None:
            self._pools = load_kits(self.config.pools, self.config.kits_root) if self.config.pools else []
        return self._pools

    def prepare(self) -> None:
        """Load kits and parse every performance now (before forking DataLoader workers, to share them)."""
        _ = self.kits, self.pools
        for p in self.performances:
            self.gmd.events(p)

    def example(self, epoch: int, index: int) -> Example:
        """Example ``index`` of ``epoch`` rendered with numpy: deterministic given the config's seed."""
        k, window, perf, offset, seed = self._draw(epoch, index)
        cfg = self.config
        kits = self.kits
        res = render(window, kits[k], cfg.n_samples, seed, cfg.augment, cfg.stems, mix_kits=kits)
        return Example(res, k, perf, offset)

    def plan(self, epoch: int, index: int) -> tuple[RenderPlan, int]:
        """The plan of example ``index`` of ``epoch`` and its kit-classifier target (:func:`kit_target`)."""
        k, window, _perf, _offset, seed = self._draw(epoch, index)
        cfg = self.config
        plan = plan_render(window, self.kits[k], cfg.n_samples, seed, cfg.augment, mix_kits=self.kits,
                           pools=self.pools)  # fmt: skip
        present = np.zeros(len(CLASSES), dtype=bool)
        present[plan.cls[plan.start >= 0]] = True
        target = kit_target(plan.sources, present) if present.any() else k
        return plan, target

    def _draw(self, epoch: int, index: int) -> tuple[int, Events, Performance, float, int]:
        """Kit index, event window, performance, offset and render seed of example ``index`` of ``epoch``."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch, index])
        kits = self.kits
        k = int(rng.integers(len(kits)))
        kit = kits[k]
        have = np.array([kit.has(c) for c in CLASSES])
        n = cfg.n_samples
        crop = n / SAMPLE_RATE
        window = Events.from_lists([], [], [])
        perf, offset = self.performances[0], 0.0
        for _ in range(cfg.max_tries):
            perf = self.performances[int(rng.choice(len(self.performances), p=self._p))]
            ev = self.gmd.events(perf)
            end = max(perf.duration, float(ev.time[-1]) if len(ev) else 0.0)
            offset = int(rng.uniform(0.0, max(0.0, end - crop)) * SAMPLE_RATE) / SAMPLE_RATE
            window = ev.window(offset, offset + crop, pre=cfg.preroll_seconds)
            if np.any((window.time >= 0) & have[window.cls]):
                break
        seed = int(rng.integers(2**62))
        return k, window, perf, offset, seed
