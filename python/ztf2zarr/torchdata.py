"""`TorchBatches`: `ztf2zarr.batches` as a PyTorch `IterableDataset`.

Importing this module imports torch; `import ztf2zarr` does not. Use it with
`DataLoader(dataset, batch_size=None, num_workers=N)`: the dataset already yields whole
batches, and each DataLoader worker (and each distributed rank) reads its own share of the
epoch's chunks, so every selected row is seen once per epoch across all of them.
"""

from __future__ import annotations

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as error:
    raise ImportError(f"ztf2zarr.TorchBatches needs PyTorch: pip install \".[torch]\" ({error})") from error

from ._batches import DEFAULT_BUFFER_MB, batches


def reader_slot(worker_id: int, num_workers: int, rank: int = 0, world_size: int = 1) -> tuple:
    """(slot, slots): the share of the chunks that DataLoader worker `worker_id` of
    `num_workers` on distributed rank `rank` of `world_size` reads."""
    return rank * num_workers + worker_id, world_size * num_workers


class TorchBatches(IterableDataset):
    """Shuffled batches of a ztf2zarr store; numeric arrays become tensors, string columns stay
    numpy. Call `set_epoch(e)` before each epoch for a new order (as with DistributedSampler)."""

    def __init__(self, store, batch_size=256, seed=0, split=None, columns=(), buffer_mb=DEFAULT_BUFFER_MB,
                 *, labels=None, prefetch=2, rank=0, world_size=1, engine="auto", storage_options=None,
                 history=None, history_len=64, history_relative_time=False, normalize="none",
                 variance=False, psf=None):
        super().__init__()
        self.store = store
        self.options = dict(batch_size=batch_size, seed=seed, split=split, columns=columns, buffer_mb=buffer_mb,
                            labels=labels, prefetch=prefetch, engine=engine, storage_options=storage_options,
                            history=history, history_len=history_len, history_relative_time=history_relative_time,
                            normalize=normalize, variance=variance, psf=psf)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        slot, slots = reader_slot(worker, workers, self.rank, self.world_size)
        for batch in batches(self.store, epoch=self.epoch, worker=slot, num_workers=slots, **self.options):
            yield {name: torch.from_numpy(values) if values.dtype.kind in "biuf" else values for name, values in batch.items()}


__all__ = ["TorchBatches", "reader_slot"]
