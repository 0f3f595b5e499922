"""Data order for resumable training: example numbers are a pure function of (step, rank), epochs of the dataset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import Dataset, Sampler

__all__ = ["EpochStream", "ShardSampler", "StepSampler"]


class StepSampler(Sampler[int]):
    """Global example numbers for one rank, from optimizer step ``start_step`` to ``total_steps``.

    Step ``s`` of rank ``r`` takes examples ``(s * world + r) * batch_size + [0, batch_size)``, so the
    order depends only on the step: a run resumed at step ``s`` sees exactly what an uninterrupted run
    would. ``len`` counts the whole run (what the training loop expects of its single long epoch);
    iteration starts at ``start_step``.
    """

    def __init__(self, batch_size: int, total_steps: int, start_step: int = 0, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.batch_size = batch_size
        self.total_steps = total_steps
        self.start_step = start_step
        self.rank = rank
        self.world = world

    def __iter__(self) -> Iterator[int]:
        b = self.batch_size
        for step in range(self.start_step, self.total_steps):
            first = (step * self.world + self.rank) * b
            yield from range(first, first + b)

    def __len__(self) -> int:
        return self.total_steps * self.batch_size


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of a fixed set (validation: every item seen once in all)."""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class EpochStream(Dataset):
    """Maps global example number ``g`` to item ``g % n`` of epoch ``g // n`` of a dataset with ``set_epoch``.

    Items keep only the tensors training needs (``drop`` removes e.g. the stems a dataset may render).
    """

    def __init__(self, dataset: Any, examples_per_epoch: int, drop: tuple[str, ...] = ("stems",)) -> None:
        if examples_per_epoch < 1:
            raise ValueError("examples_per_epoch must be at least 1")
        self.dataset = dataset
        self.n = examples_per_epoch
        self.drop = drop
        self._epoch: int | None = None

    def __getitem__(self, g: int) -> dict[str, Any]:
        epoch, i = divmod(int(g), self.n)
        if epoch != self._epoch:
            self.dataset.set_epoch(epoch)
            self._epoch = epoch
        item = self.dataset[i]
        return {k: v for k, v in item.items() if k not in self.drop}

    def __len__(self) -> int:
        return self.n
