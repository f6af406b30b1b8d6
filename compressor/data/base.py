"""The contract between datasets and the engine.

A dataset component (registered under kind ``dataset``) builds a :class:`DataModule`. The engine asks it for
deterministic *index batches* per epoch, so that training order depends only on (seed, epoch) and a resumed
run can skip exactly the batches it already consumed, and so that data-parallel ranks each take their slice
of every global batch.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


class ListDataset(Dataset):
    """A split held in memory as a list of example dicts."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class DataModule:
    """Splits (``train``/``valid``/``test``), a collate function and facts about the data (``info``).

    ``info`` holds what model and task builders need: e.g. ``num_classes``, ``labels``, ``vocab_size``,
    ``tokens``, ``feature_dim``, ``sample_rate``, ``blank_id``.
    """

    splits: tuple[str, ...] = ("train", "valid", "test")

    def __init__(self, datasets: dict[str, Dataset], info: dict[str, Any] | None = None) -> None:
        self.datasets = datasets
        self.info: dict[str, Any] = dict(info or {})

    # -- override points -------------------------------------------------------------------------
    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack a list of examples into a batch dict. The default stacks equal-shape tensors."""
        batch: dict[str, Any] = {}
        for key in items[0]:
            values = [it[key] for it in items]
            if isinstance(values[0], torch.Tensor):
                batch[key] = torch.stack(values)
            elif isinstance(values[0], (int, float)):
                batch[key] = torch.tensor(values)
            else:
                batch[key] = values
        return batch

    def batches(self, split: str, batch_size: int, *, shuffle: bool, seed: int, epoch: int
                ) -> list[list[int]]:
        """Global batches of example indices for one epoch, deterministic in (seed, epoch).

        The default shuffles and cuts fixed-size batches (the last, smaller one is kept when not shuffling
        and dropped when shuffling so every training step sees ``batch_size`` examples). Speech data
        overrides this with length bucketing and frame budgets.
        """
        n = len(self.dataset(split))
        order = list(range(n))
        if shuffle:
            random.Random(f"{seed}:{epoch}").shuffle(order)
        out = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if shuffle and len(out) > 1 and len(out[-1]) < batch_size:
            out.pop()
        return out

    # -- used by the engine ----------------------------------------------------------------------
    def request(self, keys: Iterable[str]) -> None:
        """Load the on-request batch keys among ``keys`` (``info["batch_keys_on_request"]``), which models of
        the run read; the engine calls this before any batch is made. Data without such keys ignores it."""

    def epoch_dataset(self, split: str, epoch: int) -> Dataset:
        """The dataset the loader of ``epoch`` reads (override to vary items by epoch, e.g. augmentation)."""
        return self.dataset(split)

    def dataset(self, split: str) -> Dataset:
        try:
            return self.datasets[split]
        except KeyError:
            raise KeyError(f"no split '{split}' (splits: {', '.join(self.datasets)})") from None

    def num_batches(self, split: str, batch_size: int, *, shuffle: bool, seed: int, epoch: int) -> int:
        """``len(self.batches(...))``, in constant time for the default batching (stage budgets ask it for
        every epoch before a run starts)."""
        if type(self).batches is DataModule.batches:
            n = len(self.dataset(split))
            k = -(-n // batch_size)
            return k - 1 if shuffle and k > 1 and n % batch_size else k
        return len(self.batches(split, batch_size, shuffle=shuffle, seed=seed, epoch=epoch))

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        skip: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ) -> DataLoader:
        """A DataLoader over this epoch's batches, from batch ``skip`` on, this rank's share of each."""
        batches = self.batches(split, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)[skip:]
        if world_size > 1:
            batches = [shard(b, rank, world_size) for b in batches]
        # A private generator: creating the iterator must not consume the global RNG, or a resumed run
        # (which creates its iterator at another point of the RNG stream) would diverge from the original.
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return DataLoader(
            self.epoch_dataset(split, epoch),
            batch_sampler=batches,
            collate_fn=self.collate,
            num_workers=num_workers,
            generator=generator,
            persistent_workers=False,
        )


def shard(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    n = len(batch)
    lo = rank * n // world_size
    hi = (rank + 1) * n // world_size
    return list(batch[lo:hi])
