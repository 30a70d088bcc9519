"""Training reads from ztf2zarr stores.

`batches(store, …)` yields shuffled batches of numpy arrays (`stamps`, `row`, `label_code` and
the catalog columns asked for), reading each chunk of the store exactly once per epoch, from a
store folder or a URL (`s3://`, `gs://`, `az://`: any fsspec protocol, with `storage_options=`).
`TorchBatches` wraps it as a PyTorch `IterableDataset` (torch is imported only when it is
used); with `history=` each batch also carries every sample's own light-curve history as
fixed-size arrays, and with `normalize="zscore_mad"` every stamp plane as a robust z-score
(`zscore_mad`). `LightCurves(store)` reads one object's light curve (`curve`) and the history
an alert's own packet carried (`history`), only the columns asked for, as do the one-call
`curve(store, …)` and `history(store, …)`. `open_dataset(store)` gives the store as a lazy
`xarray.Dataset`, one variable per catalog column (xarray and dask: `pip install ".[xarray]"`);
`ztf2zarr.plot` draws an alert's stamps and light curve (matplotlib: `pip install ".[plot]"`).
The store itself is written by the `ztf2zarr` command-line tool.

The same calls read a store of ZTF alerts and one of Rubin (LSST) alerts: the store's root
attribute `survey` picks the column names (`Store(path).survey`, a `Survey`): time `jd` or
`midpointMjdTai`, object `objectId` (str) or `diaObjectId` (int), band `fid` or `band`, unique id
`candid` or `diaSourceId`. A Rubin store also has the stamps' variance planes
(`batches(…, variance=True)`, `open_dataset(store)["variance"]`), and one built with `--psf` the
PSF images at their own size (`Store(path).psf(row)`, `batches(…, psf=P)` centred in P × P).
"""

from ._batches import (
    DEFAULT_BUFFER_MB, DEFAULT_HISTORY, DEFAULT_HISTORY_LSST, NORMALIZE, batches, buffer_rows, count_rows, epoch_chunks, worker_chunks, zscore_mad,
)
from ._dataset import open_dataset
from ._lightcurves import LightCurves, curve, history
from ._store import Store
from ._survey import SURVEYS, Survey, survey_of

__all__ = [
    "DEFAULT_BUFFER_MB", "DEFAULT_HISTORY", "DEFAULT_HISTORY_LSST", "LightCurves", "NORMALIZE", "SURVEYS", "Store", "Survey", "TorchBatches", "batches", "buffer_rows", "count_rows",
    "curve", "epoch_chunks", "history", "open_dataset", "survey_of", "worker_chunks", "zscore_mad",
]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "TorchBatches":  # imports torch, so only on demand
        from .torchdata import TorchBatches

        return TorchBatches
    if name == "plot":  # imports matplotlib when a figure is drawn
        import importlib

        return importlib.import_module(f"{__name__}.plot")
    raise AttributeError(f"module 'ztf2zarr' has no attribute {name!r}")
