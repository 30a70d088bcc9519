"""A ztf2zarr store as an `xarray.Dataset`, lazily: `open_dataset(store)`.

`xarray.open_zarr` opens the store too, but gives the catalog as one variable of a structured
dtype. Here every catalog column is its own variable on the `alert` dimension, read through dask
chunk by chunk; the columns of one chunk are cut from one decoded catalog chunk, so computing
several columns (or the whole Dataset) together decodes each catalog chunk once, not once per
column. `stamps` keeps the dimension names the store gives it (`alert`, `channel`, `y`, `x`) and
gets the plane names as `channel` coordinates (a Rubin store's `variance`, the stamps' variance
planes, the same); `label` holds the class names, so
`ds.where(ds.label == "QSO", drop=True)` selects a class. A stamp dimension whose name a catalog
column takes (Rubin's `x` and `y`) is named `stamp_x`, `stamp_y` instead. The light-curve tables open the same
way, each on its own dimension: `open_dataset(store, group="lightcurves/epochs")`.

Reads go through `Store` (the direct engine for folders and URLs, zarr-python otherwise), so they
behave alike under zarr-python 2.18 and 3.x. Needs xarray and dask (`pip install ".[xarray]"`).
"""

from __future__ import annotations

import numpy as np

from ._lightcurves import GROUP, _Table
from ._store import CATALOG, STAMPS, VARIANCE, Store, open_store

#: The groups `open_dataset(store, group=…)` opens besides the store itself (None).
GROUPS = (None, f"{GROUP}/epochs", f"{GROUP}/forced", f"{GROUP}/objects", f"{GROUP}/alerts")


def _need(module: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f"ztf2zarr.open_dataset needs {module}: pip install \".[xarray]\" ({error})") from error


class _Rows:
    """An array of the store that dask slices along axis 0: each slice reads the rows it covers
    (whole chunks, as dask's chunks are the store's) and gives the rest of the index to numpy."""

    def __init__(self, array, length: int):
        self.array = array
        self.shape = (length, *array.shape[1:])
        self.dtype = np.dtype(object) if np.dtype(array.dtype).kind in "OT" else np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        rows = index[0] if index else slice(None)
        start, stop, step = rows.indices(self.shape[0]) if isinstance(rows, slice) else (None, None, None)
        if start is None or step != 1:
            files = getattr(self.array, "files", None)  # the direct engine's; zarr-python's arrays name themselves
            where = files.where(self.array.prefix) if files is not None else getattr(self.array.array, "path", "array")
            raise IndexError(f"{where}: only contiguous row slices are read, not {rows!r}")
        values = np.asarray(self.array.rows(start, stop)) if stop > start else np.empty((0, *self.shape[1:]), self.dtype)
        if values.dtype != self.dtype:  # StringDType (zarr-python 3) → object, as the direct engine gives
            values = values.astype(self.dtype)
        return values[(slice(None), *index[1:])]


def _lazy(da, array, name: str, length: int | None = None):
    """`array` (a `Store` array) as a dask array chunked as the store is along axis 0."""
    rows = _Rows(array, array.shape[0] if length is None else length)
    chunks = (array.chunks[0], *rows.shape[1:])
    # The name identifies the data (store path and array): equal names share decoded chunks.
    return da.from_array(rows, chunks=chunks, name=f"ztf2zarr-{name}", lock=False, asarray=False, fancy=False)


def open_dataset(store, group: str | None = None, engine: str = "auto", storage_options: dict | None = None):
    """The store (or one of its light-curve tables) as a lazy `xarray.Dataset`.

    - `group=None`: one variable per catalog column on the `alert` dimension (values as stored:
      a column's missing value is in its `missing` attribute, its description in `description`),
      `stamps` on the store's dimensions with `channel` coordinates (`science`, `template`,
      `difference`), `variance` likewise in a store that has the stamps' variance planes (Rubin's,
      nJy²), and `label` the class names (`""` unlabeled). The attributes hold the store's
      `survey` (`"ztf"` or `"lsst"`), its `ztf2zarr` attributes, `classes` (label_code → label)
      and `splits`, each split's row indices (read at once: they are small), e.g.
      `ds.isel(alert=ds.attrs["splits"]["train"])`.
    - `group="lightcurves/epochs"`, `"lightcurves/forced"`, `"lightcurves/objects"`,
      `"lightcurves/alerts"`: that table, one variable per column on the table's own dimension
      (`epoch`, `forced_epoch`, `object_range`, `alert`), strings as Python `str` objects.

    Nothing but metadata (and the splits) is read until a value is asked for; dask then reads
    whole chunks. `engine` and `storage_options` are `Store`'s (`s3://…` URLs included)."""
    xr = _need("xarray")
    da = _need("dask.array").array
    if group not in GROUPS:
        raise ValueError(f"group must be one of {', '.join(map(repr, GROUPS))}, not {group!r}")
    opened = open_store(store, engine, storage_options)
    token = f"{opened.engine}:{opened.path}:{opened.rows}"
    if group is not None:
        return _table(xr, da, opened, group, token)

    catalog = _lazy(da, opened.catalog, f"{token}:{CATALOG}", opened.rows)
    descriptions = opened.node_attrs(CATALOG)
    missing = (opened.attrs.get("ztf2zarr") or {}).get("missing_values") or {}
    variables = {}
    for column in opened.columns:
        attrs = {k: v for k, v in (("description", descriptions.get(column)), ("missing", missing.get(column))) if v is not None}
        variables[column] = (("alert",), catalog[column], attrs)
    stamp_attrs = opened.node_attrs(STAMPS)
    dims = _pixel_dims(stamp_attrs.get("_ARRAY_DIMENSIONS") or ("alert", "channel", "y", "x"), variables)
    if dims[0] != "alert":
        raise ValueError(f"{opened.path}: stamps' first dimension is {dims[0]!r}, not 'alert'")
    if "stamps" in variables:
        raise ValueError(f"{opened.path}: the catalog has a column named 'stamps'")
    variables["stamps"] = (dims, _lazy(da, opened.stamps, f"{token}:{STAMPS}", opened.rows),
                           {k: v for k, v in stamp_attrs.items() if k != "_ARRAY_DIMENSIONS"})
    if opened.variance is not None:
        if "variance" in variables:
            raise ValueError(f"{opened.path}: the catalog has a column named 'variance'")
        variance_attrs = opened.node_attrs(VARIANCE)
        variance_dims = _pixel_dims(variance_attrs.get("_ARRAY_DIMENSIONS") or dims, variables)
        variables["variance"] = (variance_dims, _lazy(da, opened.variance, f"{token}:{VARIANCE}", opened.rows),
                                 {k: v for k, v in variance_attrs.items() if k != "_ARRAY_DIMENSIONS"})
    coords = {}
    channels = stamp_attrs.get("channels")
    if channels and len(channels) == opened.stamps.shape[1]:
        coords[dims[1]] = list(channels)
    attrs = {"survey": opened.survey.name, "ztf2zarr": opened.attrs.get("ztf2zarr") or {}, "classes": opened.classes,
             "splits": {name: opened.split_rows(name) for name in opened.splits}}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _pixel_dims(dims, variables: dict) -> tuple:
    """The stamps' dimension names, each but the first that a catalog column already takes
    (Rubin's catalog has columns `x` and `y`, the source's detector position) as `stamp_<name>`."""
    dims = tuple(dims)
    return dims[:1] + tuple(f"stamp_{d}" if d in variables else d for d in dims[1:])


def _table(xr, da, opened: Store, group: str, token: str):
    """One light-curve table as a Dataset on its own dimension."""
    if opened.node(group) is None:
        raise ValueError(f"{opened.path}: no {group} in this store (built with --no-lightcurves, or by a ztf2zarr without it)")
    table = _Table(opened, group, 1, 1)
    if table.structured is not None:  # a store of the previous release: one structured array
        dim = (opened.node_attrs(group).get("_ARRAY_DIMENSIONS") or [group.rsplit("/", 1)[1]])[0]
        whole = _lazy(da, table.structured, f"{token}:{group}")
        variables = {c: ((dim,), whole[c]) for c in table.columns}
    else:
        variables = {}
        for column, array in table._arrays.items():
            attrs = opened.node_attrs(f"{group}/{column}")
            dim = (attrs.get("_ARRAY_DIMENSIONS") or [group.rsplit("/", 1)[1]])[0]
            variables[column] = ((dim,), _lazy(da, array, f"{token}:{group}/{column}", table.length),
                                 {k: v for k, v in attrs.items() if k != "_ARRAY_DIMENSIONS"})
    return xr.Dataset(variables, attrs={"columns": list(table.columns), "group": group})
