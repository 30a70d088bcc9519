"""Light curves of a ztf2zarr store: one object's whole curve, and the history one alert carried.

The store keeps each epoch of an object once (`lightcurves/epochs`: detections and upper limits;
`lightcurves/forced`: forced photometry), an object index of row ranges (`lightcurves/objects`),
and for every catalog row the rows of the epochs its own packet carried
(`lightcurves/alerts` → `history_epochs`, `history_forced`). `curve` reads the ranges of one
object; `history` reads exactly an alert's own history, so a training row never sees epochs from
its future. docs/lightcurves.md describes the tables.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ._store import Store

GROUP = "lightcurves"
TABLES = ("epochs", "forced")
#: Where each table's history of an alert is: (start column, count column) of `lightcurves/alerts`.
_HISTORY_COLUMNS = {"epochs": ("history_start", "history_count"), "forced": ("forced_start", "forced_count")}
#: Decoded chunks kept per array, so alerts read one after another share their chunks.
DEFAULT_CACHE_CHUNKS = 8


class _ChunkCache(OrderedDict):
    """The last few decoded chunks of one array (the oldest dropped first)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def trim(self):
        while len(self) > self.limit:
            self.popitem(last=False)


class LightCurves:
    """The light curves of one store.

    >>> lc = LightCurves("train.zarr")
    >>> lc.curve("ZTF18abcdefg")            # every detection and upper limit, sorted by jd
    >>> lc.history(5)                       # the epochs that catalog row 5's packet carried
    >>> lc.history(5, table="forced")       # its forced photometry (schema 4.x)
    """

    def __init__(self, store, engine: str = "auto", storage_options: dict | None = None, cache_chunks: int = DEFAULT_CACHE_CHUNKS):
        self.store = store if isinstance(store, Store) else Store(store, engine=engine, storage_options=storage_options)
        try:
            self._tables = {name: self.store.array(f"{GROUP}/{name}") for name in TABLES}
        except KeyError:
            raise ValueError(
                f"{self.store.path}: no light curves in this store (it was built with --no-lightcurves, "
                "or by a ztf2zarr without them; rebuild it to get them)"
            ) from None
        self.rows = self.store.rows
        self._alerts = self.store.array(f"{GROUP}/alerts")
        self._history = {name: self.store.array(f"{GROUP}/history_{name}") for name in TABLES}
        if self._alerts.shape[0] != self.rows:
            raise ValueError(f"{self.store.path}: {GROUP}/alerts has {self._alerts.shape[0]} rows, the catalog {self.rows}")
        self._cache_chunks = cache_chunks
        self._caches: dict = {}
        self._index = None

    # ---- one object's curve ----

    @property
    def objects(self) -> np.ndarray:
        """Every objectId with light-curve rows, sorted, each once."""
        ids, _, _ = self._object_index()
        return np.unique(ids)

    def curve(self, object_id: str, table: str = "epochs") -> np.ndarray:
        """Every row of `table` (`epochs` or `forced`) that belongs to `object_id`, sorted by `jd`
        (rows of equal jd in store order). An object with no rows in `table` (forced photometry
        of a schema 3.x object) gives an empty array; an object not in the store is a KeyError."""
        self._check_table(table)
        ids, ranges, order = self._object_index()
        lo, hi = np.searchsorted(ids, object_id, "left"), np.searchsorted(ids, object_id, "right")
        if lo == hi:
            raise KeyError(f"{self.store.path}: no object {object_id!r} in the light curves")
        mine = ranges[order[lo:hi]]
        mine = mine[mine["table"] == table]
        values = self._take(table, np.sort(_spans(mine["start"], mine["count"])))
        return values[np.argsort(values["jd"], kind="stable")]

    def _object_index(self):
        """The object index read once: objectIds sorted, the ranges, and the sorting order."""
        if self._index is None:
            objects = self.store.array(f"{GROUP}/objects")
            ranges = objects.rows(0, objects.shape[0])
            order = np.argsort(ranges["objectId"], kind="stable")
            self._index = (ranges["objectId"][order], ranges, order)
        return self._index

    # ---- one alert's history ----

    def history_rows(self, row: int, table: str = "epochs") -> np.ndarray:
        """The rows of `table` that catalog row `row`'s packet carried, in packet order
        (`prv_candidates`, then the alert's own candidate; `fp_hists` for `forced`)."""
        rows, _ = self._history_rows([row], table)
        return rows

    def history(self, row: int, table: str = "epochs") -> np.ndarray:
        """The epochs catalog row `row`'s own packet carried (rows of `table`, packet order):
        exactly what that alert knew, nothing from its future."""
        return self.histories([row], table)[0]

    def histories(self, rows, table: str = "epochs") -> list:
        """`history(r, table)` for each of `rows`, reading each chunk they need once."""
        flat, counts = self._history_rows(rows, table)
        values = self._take(table, flat)
        return np.split(values, np.cumsum(counts)[:-1]) if len(counts) else []

    def _history_rows(self, rows, table: str) -> tuple:
        """The table rows the alerts at `rows` carried, one alert after another, and how many
        each carried."""
        self._check_table(table)
        start_column, count_column = _HISTORY_COLUMNS[table]
        where = self._take_array("alerts", self._alerts, np.asarray([self._row(r) for r in rows], dtype=np.int64))
        starts, counts = where[start_column].astype(np.int64), where[count_column].astype(np.int64)
        flat = self._take_array(f"history_{table}", self._history[table], _spans(starts, counts))
        return flat.astype(np.int64), counts

    # ---- reads ----

    def _row(self, row) -> int:
        row = int(row)
        if not -self.rows <= row < self.rows:
            raise IndexError(f"{self.store.path}: row {row} is not in the store ({self.rows} rows)")
        return row % self.rows

    @staticmethod
    def _check_table(table: str):
        if table not in TABLES:
            raise ValueError(f"table must be one of {TABLES}, not {table!r}")

    def _take(self, table: str, rows: np.ndarray) -> np.ndarray:
        return self._take_array(table, self._tables[table], rows)

    def _take_array(self, name: str, array, rows: np.ndarray) -> np.ndarray:
        cache = self._caches.setdefault(name, _ChunkCache(self._cache_chunks))
        values = array.take(rows, cache)
        cache.trim()
        return values


def _spans(starts, counts) -> np.ndarray:
    """Positions start .. start+count-1 of each (start, count), one span after another."""
    parts = [np.arange(start, start + count, dtype=np.int64) for start, count in zip(starts, counts)]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def curve(store, object_id: str, table: str = "epochs", **open_options) -> np.ndarray:
    """One object's light curve (`LightCurves(store, **open_options).curve(object_id, table)`)."""
    return LightCurves(store, **open_options).curve(object_id, table)


def history(store, row: int, table: str = "epochs", **open_options) -> np.ndarray:
    """The history catalog row `row` carried (`LightCurves(store, **open_options).history(row, table)`)."""
    return LightCurves(store, **open_options).history(row, table)
