"""Data loader over a :class:`~r2cnn.data.store.SketchStore`: batches of :class:`~r2cnn.sketch.SketchBatch`.

Determinism: the batch sampler yields ``(store_index, epoch)`` pairs, so each worker process knows the epoch
without shared state (this also works with ``persistent_workers``), and sample i's augmentation in epoch e draws from
``np.random.default_rng([_SAMPLE, seed, e, i])``. The batches are then identical for any ``num_workers``.

Distributed: with ``world_size`` W each global batch (``batch_size * W`` samples, in the order one process with that
batch size would see) is cut into W contiguous shards and rank r keeps shard r.

Workers start from a ``forkserver`` (a clean process that imported this module and the rasteriser once), not by
forking the training process: numba's OpenMP threading layer (used by :mod:`r2cnn.raster`'s CPU kernels) aborts
a forked child that runs parallel code once the parent has, which the parent does in every training step. Each
worker runs numba (like torch) on one thread: the workers are the parallelism, and exits when the training process
is gone (:func:`_exit_with_trainer`). As on macOS and Windows, a script
that makes a loader with workers needs the ``if __name__ == "__main__":`` guard (``r2cnn`` and
``python -m r2cnn`` have it).

Resume: ``loader.batch_sampler.skip(n)`` makes the next epoch's iteration start at batch n of that epoch (the
permutation depends only on (seed, epoch), so the remaining batches are exactly those of an uninterrupted run).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from r2cnn.data.store import SketchStore
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch, SketchBatch

# First word of the seed entropy, so that shuffling and augmentation streams never coincide.
_PERMUTATION, _SAMPLE = 0x5EED0001, 0x5EED0002
# Imported once by the forkserver, so that each worker starts in milliseconds rather than importing torch.
_WORKER_PRELOAD = ["r2cnn.data.loader", "r2cnn.data.transforms", "r2cnn.raster"]
_WATCH_SECONDS = 1.0  # how often a worker checks that the training process still exists


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation generator of store sample ``index`` in ``epoch`` (independent of workers and ranks)."""
    return np.random.default_rng([_SAMPLE, int(seed), int(epoch), int(index)])


class ShardedBatchSampler(Sampler):
    """Batches of ``(store_index, epoch)`` over ``indices``: seeded shuffle per epoch, rank shard, skip for resume.

    ``len(self)`` is the number of batches this rank yields in the next iteration. With ``drop_last=False`` and
    ``world_size > 1`` the last, partial global batch is cut as evenly as possible; a rank whose shard is empty
    yields one batch fewer (use ``drop_last=True`` for training under DDP).
    """

    def __init__(self, indices: np.ndarray, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise R2CNNError(f"batch_size must be >= 1, not {batch_size}")
        if not 0 <= rank < world_size:
            raise R2CNNError(f"rank {rank} out of range for world_size {world_size}")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.rank, self.world_size = bool(drop_last), int(rank), int(world_size)
        self.epoch, self._skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip(self, n_batches: int) -> None:
        """Start the next iteration at batch ``n_batches`` of the current epoch (once; later epochs are whole)."""
        self._skip = int(n_batches)

    def _global_batches(self) -> int:
        gbs, n = self.batch_size * self.world_size, len(self.indices)
        return n // gbs if self.drop_last else -(-n // gbs)

    def _shards(self, start: int) -> Iterator[np.ndarray]:
        gbs = self.batch_size * self.world_size
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([_PERMUTATION, self.seed, self.epoch]).permutation(len(order))]
        for b in range(start, self._global_batches()):
            shard = np.array_split(order[b * gbs:(b + 1) * gbs], self.world_size)[self.rank]
            if len(shard):
                yield shard

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        start, self._skip, epoch = self._skip, 0, self.epoch
        for shard in self._shards(start):
            yield [(int(i), epoch) for i in shard]

    def __len__(self) -> int:
        nb, gbs = self._global_batches(), self.batch_size * self.world_size
        if nb == 0:
            return 0
        last = len(self.indices) - (nb - 1) * gbs  # size of the last global batch (gbs unless partial)
        last_shard = last // self.world_size + (self.rank < last % self.world_size)
        return max(nb - (last_shard == 0) - self._skip, 0)


class StoreDataset(Dataset):
    """Items are keyed by ``(store_index, epoch)``; returns the transformed :class:`Sketch` (int label)."""

    def __init__(self, store: SketchStore, transform: Callable[[Sketch, np.random.Generator], Sketch] | None,
                 seed: int = 0):
        self.store, self.transform, self.seed = store, transform, int(seed)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, key: tuple[int, int]) -> Sketch:
        index, epoch = key
        sketch = self.store[index]
        if self.transform is None:
            return sketch
        if not getattr(self.transform, "needs_rng", True):  # e.g. the paper's QuickDraw presets: normalise only
            return self.transform(sketch, None)  # a generator per sample costs as much as reading the sketch
        return self.transform(sketch, sample_rng(self.seed, epoch, index))


class CollateSketches:
    """Packs sketches into a :class:`SketchBatch`; with ``raster_size``, also the NLR geometry (in the worker)."""

    def __init__(self, raster_size: int | tuple[int, int] | None = None, raster_eps: float = 1.0):
        self.raster_size, self.raster_eps = raster_size, raster_eps

    def __call__(self, sketches: Sequence[Sketch]) -> SketchBatch:
        batch = SketchBatch.from_sketches(sketches)
        if self.raster_size is not None:
            from r2cnn.raster import geometry
            batch.geometry = geometry(batch.points, batch.offsets, self.raster_size, self.raster_eps)
        return batch


def _init_worker(worker_id: int, trainer_pid: int, trainer_started: float) -> None:
    """One numba thread per worker, as PyTorch does for its own threads (the workers are the parallelism); and a
    watch on the training process, which the worker's own parent (the forkserver) is not."""
    import numba
    numba.set_num_threads(1)
    threading.Thread(target=_exit_with_trainer, args=(trainer_pid, trainer_started), daemon=True).start()


def _exit_with_trainer(pid: int, started: float) -> None:
    """Exit when the training process is gone (e.g. SIGKILLed). PyTorch's own watchdog only checks the parent
    process, here the forkserver, which itself stays alive as long as any worker holds its pipe: without this, a
    killed run would leave its workers (and their shared memory) behind forever."""
    import psutil
    while True:
        time.sleep(_WATCH_SECONDS)
        try:
            trainer = psutil.Process(pid)
            if trainer.create_time() != started or trainer.status() == psutil.STATUS_ZOMBIE:
                os._exit(0)
        except psutil.NoSuchProcess:
            os._exit(0)


def make_loader(store: SketchStore | str, split: str | None, *, batch_size: int,
                transform: Callable[[Sketch, np.random.Generator], Sketch] | None = None, shuffle: bool = False,
                seed: int = 0, num_workers: int = 0, raster_size: int | tuple[int, int] | None = None,
                raster_eps: float = 1.0, drop_last: bool = False, rank: int = 0, world_size: int = 1,
                fold: int | None = None, indices: np.ndarray | None = None) -> DataLoader:
    """A DataLoader yielding :class:`SketchBatch` for ``split`` (or explicit store ``indices``) of ``store``.

    Args:
        transform: ``f(sketch, rng) -> sketch`` (:func:`r2cnn.data.transforms.make_transform`); None yields the
            store's source coordinates unchanged (not normalised).
        shuffle, seed: seeded permutation per epoch (``loader.batch_sampler.set_epoch``).
        raster_size, raster_eps: precompute ``batch.geometry`` for the rasteriser in the workers.
        rank, world_size: this process's shard of each global batch (DDP).
        fold: test fold of a k-fold store (:meth:`SketchStore.indices`).
    The batch sampler also has ``skip(n_batches)`` for exact mid-epoch resume. ``pin_memory`` is on when CUDA is
    available; workers are persistent across epochs.
    """
    if not isinstance(store, SketchStore):
        store = SketchStore(store)
    if indices is None:
        if split is None:
            raise R2CNNError("make_loader needs a split or explicit indices")
        indices = store.indices(split, fold=fold)
    sampler = ShardedBatchSampler(indices, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank,
                                  world_size=world_size)
    context = init_worker = None
    if num_workers > 0:
        import psutil
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_WORKER_PRELOAD)
        init_worker = functools.partial(_init_worker, trainer_pid=os.getpid(),
                                        trainer_started=psutil.Process().create_time())
    return DataLoader(StoreDataset(store, transform, seed), batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=CollateSketches(raster_size, raster_eps), pin_memory=torch.cuda.is_available(),
                      persistent_workers=num_workers > 0, multiprocessing_context=context,
                      worker_init_fn=init_worker)
