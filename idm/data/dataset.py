"""The torch training datasets: GMD crops with random kits, rendered on the fly (numpy) or as plans for the device."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from idm.data.batch_render import plan_item
from idm.data.evalset import EvalClip, eval_clips, render_eval_clip
from idm.data.examples import ExampleSampler, TrainDataConfig
from idm.data.kits import Kit
from idm.data.plan import LayerTable

__all__ = ["EvalClip", "PlanDataset", "RenderedDataset", "TrainDataConfig", "eval_clips", "render_eval_clip"]


class RenderedDataset(Dataset):
    """Map-style dataset of rendered examples; item ``i`` is a function of ``(config.seed, epoch, i)``.

    Items are dicts: ``audio`` float32 ``[N]``, ``onsets`` and ``velocity`` float32 ``[9, F]``
    (``F = N // 256 + 1``; class axis in :data:`idm.classes.CLASSES` order), ``kit`` int64 (index
    in :attr:`kit_names` of the example's kit; with a kit mix drawn by the augmentation some
    classes come from other kits), and ``stems`` float32 ``[9, N]`` when ``config.stems``.

    Parameters
    ----------
    config
        What to render.
    kits
        Already loaded kits (shared read-only with forked workers); default: ``config.kits``
        loaded from ``config.kits_root`` on first use in each process. Call :meth:`prepare`
        before making a ``DataLoader`` to load kits and MIDI once and share them with workers.

    Notes
    -----
    :meth:`set_epoch` changes what workers render only if they are started after it (the
    ``DataLoader`` default); with ``persistent_workers=True`` they keep the epoch they copied.
    """

    def __init__(self, config: TrainDataConfig, kits: list[Kit] | None = None) -> None:
        self.config = config
        self.sampler = ExampleSampler(config, kits)
        self.epoch = 0

    @property
    def kit_names(self) -> tuple[str, ...]:
        """Kit of each ``kit`` index."""
        return self.sampler.kit_names

    def prepare(self) -> RenderedDataset:
        """Load kits and parse all MIDI now; returns self."""
        self.sampler.prepare()
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose examples are rendered."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.config.examples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        ex = self.sampler.example(self.epoch, int(index))
        r = ex.render
        item = {
            "audio": torch.from_numpy(r.mixture),
            "onsets": torch.from_numpy(r.onsets),
            "velocity": torch.from_numpy(r.velocity),
            "kit": torch.tensor(ex.kit_index, dtype=torch.int64),
        }
        if r.stems is not None:
            item["stems"] = torch.from_numpy(r.stems)
        return item


class PlanDataset(Dataset):
    """Map-style dataset of render plans (no audio): item ``i`` is a function of ``(config.seed, epoch, i)``.

    Items are dicts of numpy arrays (:func:`idm.data.batch_render.plan_item`), batched by
    :func:`idm.data.batch_render.collate_plans` and played on the training device by a
    :class:`idm.data.batch_render.BatchRenderer` built on :attr:`table`. The same index gives the same clip
    as :class:`RenderedDataset` (pitch shifting aside: a band-limited resampler on the device, soxr there).
    ``kit`` is the kit-classifier target (:func:`idm.data.examples.kit_target`: -1 when pools play most classes).
    """

    def __init__(self, config: TrainDataConfig, kits: list[Kit] | None = None) -> None:
        self.config = config
        self.sampler = ExampleSampler(config, kits)
        self.epoch = 0
        self._table: LayerTable | None = None

    @property
    def kit_names(self) -> tuple[str, ...]:
        return self.sampler.kit_names

    @property
    def table(self) -> LayerTable:
        """Global ids of every layer of the kits and pools (what plans refer to)."""
        if self._table is None:
            self._table = LayerTable([*self.sampler.kits, *self.sampler.pools])
        return self._table

    def prepare(self) -> PlanDataset:
        """Load kits, pools and MIDI and number the layers now (before workers fork); returns self."""
        self.sampler.prepare()
        _ = self.table
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.config.examples_per_epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        plan, target = self.sampler.plan(self.epoch, int(index))
        return plan_item(plan, self.table, target)
