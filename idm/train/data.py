"""Training and validation data for a run: ``RenderedDataset``s from the config, the Lightning data module."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from idm.errors import DataError
from idm.train.config import data_config
from idm.train.sampling import EpochStream, ShardSampler, StepSampler

__all__ = ["IDMDataModule", "RunData", "build_datasets", "is_pack"]


@dataclass
class RunData:
    """The datasets of a run and how validation kits map to the model's kit classes."""

    train: Any  # RenderedDataset (map-style, set_epoch)
    train_examples: int  # examples per dataset epoch
    kit_names: tuple[str, ...]  # training kits, in kit-index order
    val: Any | None = None  # RenderedDataset of the fixed validation clips
    val_examples: int = 0
    val_kit_ids: list[int] | None = None  # training kit index of each validation kit (-1: unseen)


def is_pack(folder: Path) -> bool:
    """A data pack from ``idm data pack`` (``kits.json`` + ``kits/`` + ``gmd/``), rather than a GMD root."""
    return (folder / "kits.json").is_file()


def build_datasets(cfg: Any, data_dir: str | Path) -> RunData:
    """Training set from ``cfg.data`` at ``data_dir`` (a GMD root or a data pack); validation per ``cfg.training``.

    Kits are loaded and MIDI parsed here, once, before data-loader workers fork.
    """
    from idm.data.dataset import PlanDataset, RenderedDataset
    from idm.data.kits import load_kit_ref
    from idm.data.pools import pooled_kits

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: --data must be a Groove MIDI Dataset root or a data pack folder")
    raw = dict(cfg.data)
    raw.setdefault("seed", cfg.training.seed)
    kits_root: str | Path | None
    if is_pack(data_dir):
        gmd_root, kits_root = data_dir / "gmd", data_dir
    else:
        gmd_root, kits_root = data_dir, raw.get("kits_root")
    base = data_config(raw, "config", gmd_root=gmd_root, split="train")
    kits = [load_kit_ref(k, kits_root) for k in base.kits]
    kit_names = tuple(k.name for k in kits)
    train_cfg = replace(base, kits=kit_names, kits_root=kits_root)
    on_device = cfg.training.render == "device"
    train = (PlanDataset if on_device else RenderedDataset)(train_cfg, kits).prepare()
    out = RunData(train, int(train_cfg.examples_per_epoch), kit_names)
    tc = cfg.training
    if tc.val_examples > 0:
        if tuple(tc.val_kits) == ("pooled",):  # new combinations of the training sounds, one kit per clip
            pools = [load_kit_ref(k, kits_root) for k in train_cfg.pools]
            vkits = list(pooled_kits([*kits, *pools], tc.val_examples, tc.seed).values())
        else:
            vkits = [load_kit_ref(k, kits_root) for k in tc.val_kits] if tc.val_kits else kits
        val_cfg = replace(
            train_cfg,
            split=tc.val_split,
            kits=tuple(k.name for k in vkits),
            examples_per_epoch=tc.val_examples,
            augment=None,
            stems=False,
            pools=(),
        )
        val = RenderedDataset(val_cfg, vkits).prepare()
        val.set_epoch(0)
        out.val = val
        out.val_examples = tc.val_examples
        out.val_kit_ids = [kit_names.index(k) if k in kit_names else -1 for k in val.kit_names]
    return out


class IDMDataModule(L.LightningDataModule):
    """Loaders whose order depends only on the optimizer step (see :class:`StepSampler`), so resuming is exact."""

    def __init__(self, data: RunData, batch_size: int, workers: int) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.workers = workers

    def _loader(self, dataset: Any, sampler: Any) -> DataLoader:
        from idm.data.batch_render import collate_plans
        from idm.data.dataset import PlanDataset

        plans = isinstance(dataset.dataset, PlanDataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=collate_plans if plans else None,
            num_workers=self.workers,
            pin_memory=self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator",
            persistent_workers=False,
            prefetch_factor=4 if self.workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        assert t is not None
        sampler = StepSampler(self.batch_size, int(t.max_steps), int(t.global_step), t.global_rank, t.world_size)
        return self._loader(EpochStream(self.data.train, self.data.train_examples), sampler)

    def val_dataloader(self) -> DataLoader | list[Any]:
        t = self.trainer
        assert t is not None
        if self.data.val is None:
            return []
        sampler = ShardSampler(self.data.val_examples, t.global_rank, t.world_size)
        return self._loader(EpochStream(self.data.val, self.data.val_examples), sampler)
