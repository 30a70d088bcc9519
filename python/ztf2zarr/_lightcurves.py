"""Light curves of a ztf2zarr store: one object's whole curve, and the history one alert carried.

This module owns reading `lightcurves/`. The store keeps every version of an epoch that a stored
alert carried (`lightcurves/epochs`: detections and upper limits; `lightcurves/forced`: forced
photometry), an object index of row ranges (`lightcurves/objects`), and for every catalog row
the rows its own packet carried (`lightcurves/alerts` → `history_epochs`, `history_forced`).
Each table is a group of 1-D column arrays, so a read fetches only the columns asked for;
stores of the previous release, whose tables are single structured arrays, read the same way.
`curve` reads the ranges of one object; `history` reads exactly an alert's own history, so a
training row never sees epochs from its future. docs/lightcurves.md describes the tables.

Column names follow the store's survey (`_survey.py`). ZTF: objects `objectId` (str), time
`jd`, an epoch keyed by `candid` (detection) or (`jd`, `fid`) (upper limit), a forced epoch by
(`jd`, `fid`, `pid`), carrier columns `alert_jd`, `alert_candid`. Rubin: objects `diaObjectId`
(int64), time `midpointMjdTai` (MJD, TAI), an epoch keyed by `diaSourceId`, a forced epoch by
`diaForcedSourceId`, carrier columns `alert_midpointMjdTai`, `alert_diaSourceId`.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ._store import Store, open_store
from ._survey import ZTF

GROUP = "lightcurves"
TABLES = ("epochs", "forced")
VERSIONS = ("latest", "all")
#: Where each table's history of an alert is: (start column, count column) of `lightcurves/alerts`.
_HISTORY_COLUMNS = {"epochs": ("history_start", "history_count"), "forced": ("forced_start", "forced_count")}
#: ZTF's columns that name the alert whose packet first carried a row's values (a store's
#: own: `Survey.alert_columns`).
_ALERT_COLUMNS = ZTF.alert_columns
#: Within one object of a ZTF store, the columns that tell its epochs apart (objectId is the
#: object's own): a detection by candid, an upper limit by (jd, fid), a forced epoch by (jd, fid,
#: pid). A store's own: `Survey.key_columns`.
_KEY_COLUMNS = ZTF.key_columns
#: Decoded chunks kept per column at most, so alerts read one after another share their chunks.
DEFAULT_CACHE_CHUNKS = 8
#: The decoded chunks kept per table at most, in MB. A numeric column's chunk is about 1 MB and
#: a table has up to 72 columns, so a count alone could keep hundreds of MB.
DEFAULT_CACHE_MB = 64
#: Bytes a decoded string is taken to hold (a pointer and a short str), for the cache's budget.
_STRING_BYTES = 64


class _ChunkCache(OrderedDict):
    """The last few decoded chunks of one array (the oldest dropped first)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def trim(self):
        while len(self) > self.limit:
            self.popitem(last=False)


class _Table:
    """One table of `lightcurves/`, read column by column with a chunk cache per column.

    This release writes a table as a group of 1-D arrays, one per column, listed in order by the
    group's `columns` attribute; the previous release wrote one structured array, which is read
    whole and cut into columns here, so both look the same to the reader."""

    def __init__(self, store: Store, name: str, cache_chunks: int, cache_mb: float):
        self.name = name
        self._caches: dict = {}
        if store.node(name) == "group":
            order = store.node_attrs(name).get("columns")
            if not order:
                raise ValueError(f"{store.path}: {name} has no 'columns' attribute listing its columns")
            self._arrays = {column: store.array(f"{name}/{column}") for column in order}
            self.structured = None
        else:
            self.structured = store.array(name)  # KeyError when the store has no such table
            self._arrays = {}
        self.columns = tuple(self._arrays) if self.structured is None else tuple(self.structured.dtype.names)
        first = self.structured if self.structured is not None else self._arrays[self.columns[0]]
        self.length = first.shape[0]
        self._cache_chunks = _cache_limit([self.structured] if self.structured is not None else list(self._arrays.values()),
                                          cache_chunks, cache_mb)

    def check(self, columns) -> tuple:
        """`columns` (None: all of them, in table order) as a tuple, each one of this table's."""
        if columns is None:
            return self.columns
        columns = (columns,) if isinstance(columns, str) else tuple(columns)
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise ValueError(f"{self.name} has no column {unknown[0]!r} (columns: {', '.join(self.columns)})")
        return tuple(dict.fromkeys(columns))

    def take(self, rows: np.ndarray, columns) -> dict:
        """column → values at the positions `rows`, in that order; each chunk decoded once."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.structured is not None:
            values = _take(self._caches, None, self.structured, rows, self._cache_chunks)
            return {c: values[c] for c in columns}
        return {c: _take(self._caches, c, self._arrays[c], rows, self._cache_chunks) for c in columns}

    def dtypes(self) -> dict:
        if self.structured is not None:
            return {c: self.structured.dtype.fields[c][0] for c in self.columns}
        return {c: np.dtype(self._arrays[c].dtype) for c in self.columns}

    def read(self, columns) -> dict:
        """column → every value of the column."""
        return self.take(np.arange(self.length, dtype=np.int64), columns)


def _cache_limit(arrays: list, cache_chunks: int, cache_mb: float) -> int:
    """Chunks to keep per array so that `arrays` together keep at most `cache_mb` (and each
    at most `cache_chunks`), and at least one: the one the last read used."""
    def chunk_bytes(array) -> int:
        itemsize = _STRING_BYTES if np.dtype(array.dtype).kind in "OT" else np.dtype(array.dtype).itemsize
        return int(np.prod(array.chunks)) * itemsize

    total = sum(chunk_bytes(a) for a in arrays) or 1
    return max(1, min(cache_chunks, int(cache_mb * 1e6) // total))


def _take(caches: dict, key, array, rows: np.ndarray, limit: int) -> np.ndarray:
    """`array.take(rows)` through the chunk cache `caches[key]` (made on first use)."""
    cache = caches.setdefault(key, _ChunkCache(limit))
    values = array.take(rows, cache)
    cache.trim()
    return values


class LightCurves:
    """The light curves of one store (ZTF or Rubin: `self.survey` names its columns).

    >>> lc = LightCurves("samples.zarr")
    >>> lc.curve("ZTF18abcdefg")                          # its detections and upper limits, by jd
    >>> lc.curve("ZTF18abcdefg", columns=["jd", "magpsf"])  # only these columns are read
    >>> lc.history(5)                                     # the rows catalog row 5's packet carried
    >>> lc.history(5, table="forced")                     # its forced photometry (schema 4.x)
    >>> LightCurves("rubin.zarr").curve(169645854020337671)  # a Rubin diaObjectId (int), by midpointMjdTai

    Decoded chunks are kept for the next read (at most `cache_chunks` per column and
    `cache_mb` per table), so alerts or objects read one after another share their chunks.
    """

    def __init__(self, store, engine: str = "auto", storage_options: dict | None = None,
                 cache_chunks: int = DEFAULT_CACHE_CHUNKS, cache_mb: float = DEFAULT_CACHE_MB):
        self.store = open_store(store, engine, storage_options)
        if self.store.node(GROUP) is None:
            raise ValueError(
                f"{self.store.path}: no light curves in this store (it was built with --no-lightcurves, "
                "or by a ztf2zarr without them; rebuild it to get them)"
            )
        self.survey = self.store.survey
        self._cache = (cache_chunks, cache_mb)
        self._tables = {name: _Table(self.store, f"{GROUP}/{name}", *self._cache) for name in TABLES}
        self._alerts = _Table(self.store, f"{GROUP}/alerts", *self._cache)
        # Plain 1-D arrays of table rows, in both layouts.
        self._history = {name: self.store.array(f"{GROUP}/history_{name}") for name in TABLES}
        self._history_caches: dict = {}
        self.rows = self.store.rows
        if self._alerts.length != self.rows:
            raise ValueError(f"{self.store.path}: {GROUP}/alerts has {self._alerts.length} rows, the catalog {self.rows}")
        self._index = None

    @property
    def columnar(self) -> bool:
        """Whether the tables are groups of columns (False: a store of the previous release)."""
        return self._tables["epochs"].structured is None

    def columns(self, table: str = "epochs") -> tuple:
        """The column names of `table`, in table order."""
        return self._table(table).columns

    def dtypes(self, table: str = "epochs") -> dict:
        """column → the numpy dtype it is stored with (object or StringDType for strings of
        this release's layout, `<U` for the previous release's)."""
        return self._table(table).dtypes()

    # ---- one object's curve ----

    @property
    def objects(self) -> np.ndarray:
        """Every object id with light-curve rows (ZTF `objectId` strings, Rubin `diaObjectId`
        int64), sorted, each once."""
        ids, _, _ = self._object_index()
        return np.unique(ids)

    def curve(self, object_id, table: str = "epochs", columns=None, versions: str = "latest") -> np.ndarray:
        """The rows of `table` (`epochs` or `forced`) that belong to `object_id` (ZTF: an
        `objectId` string; Rubin: a `diaObjectId`, an int), sorted by time (`jd`; Rubin:
        `midpointMjdTai`; rows of equal time in store order), with `columns` only (default: all,
        in table order).

        A key (ZTF detection: candid; upper limit: jd, fid; forced epoch: jd, fid, pid; Rubin:
        diaSourceId, diaForcedSourceId) has one row per distinct value set the alerts carried.
        `versions="latest"` gives one row per key: the version first carried by the latest alert
        (greatest `alert_jd`, then `alert_candid`; Rubin: `alert_midpointMjdTai`,
        `alert_diaSourceId`; of two versions one packet carried, the one stored first).
        `versions="all"` gives every stored version. An object with no rows in `table` (forced
        photometry of a schema 3.x object) gives an empty array; an object not in the store is
        a KeyError."""
        source = self._table(table)
        columns = source.check(columns)
        if versions not in VERSIONS:
            raise ValueError(f"versions must be one of {VERSIONS}, not {versions!r}")
        rows = self._object_rows(object_id, table)
        carriers = self.survey.alert_columns
        latest = versions == "latest" and all(c in source.columns for c in carriers)
        time = self.survey.time_column
        # The object id is the same on every row of one curve: only read it if it is asked for.
        needed = set(columns) | {time} | (set(self.survey.key_columns[table]) | set(carriers) if latest else set())
        values = source.take(rows, [c for c in source.columns if c in needed])
        keep = _latest_versions(values, table, rows, self.survey) if latest else np.arange(len(rows))
        by_time = keep[np.argsort(values[time][keep], kind="stable")]
        return _records({c: values[c][by_time] for c in columns})

    def _object_rows(self, object_id, table: str) -> np.ndarray:
        """The store rows of `table` that belong to `object_id`, ascending."""
        ids, ranges, order = self._object_index()
        object_id = self.survey.object_key(object_id, ids)
        lo, hi = np.searchsorted(ids, object_id, "left"), np.searchsorted(ids, object_id, "right")
        if lo == hi:
            raise KeyError(f"{self.store.path}: no object {object_id!r} in the light curves")
        mine = order[lo:hi]
        mine = mine[_fixed_width(ranges["table"][mine]) == table]
        return np.sort(_spans(ranges["start"][mine], ranges["count"][mine]))

    def _object_index(self):
        """The object index read once: object ids sorted, the ranges, and the sorting order."""
        if self._index is None:
            objects = _Table(self.store, f"{GROUP}/objects", *self._cache)
            column = self.survey.object_column
            ranges = objects.read((column, "table", "start", "count"))
            ids = _fixed_width(ranges[column])
            self._check_index(ids, ranges)
            order = np.argsort(ids, kind="stable")
            self._index = (ids[order], ranges, order)
        return self._index

    def _check_index(self, ids, ranges):
        """Refuse an object index that `ztf2zarr verify` would: a range of neither table, one
        that reaches past the end of its table, or ranges that cover more or fewer rows than the
        table has (each row is in exactly one range). Read, it would serve another object's rows
        or rows that are not there."""
        tables = _fixed_width(ranges["table"])
        starts, counts = ranges["start"].astype(np.int64), ranges["count"].astype(np.int64)
        where = f"{self.store.path}: {GROUP}/objects is damaged"
        advice = "`ztf2zarr verify` says what else is"
        unknown = ~np.isin(tables, TABLES)
        if unknown.any():
            at = int(np.argmax(unknown))
            raise ValueError(f"{where}: object {ids[at]!r} has a range of table {str(tables[at])!r}, neither of {TABLES}; {advice}")
        for name in TABLES:
            mine = tables == name
            length = self._tables[name].length
            bad = mine & ((starts < 0) | (counts < 0) | (starts + counts > length))
            if bad.any():
                at = int(np.argmax(bad))
                raise ValueError(
                    f"{where}: object {ids[at]!r} has {name} rows {int(starts[at])}+{int(counts[at])}, past the end of "
                    f"{GROUP}/{name} ({length} rows); {advice}"
                )
            covered = int(counts[mine].sum())
            if covered != length:
                raise ValueError(
                    f"{where}: its ranges cover {covered} rows of {GROUP}/{name}, which has {length}; {advice}"
                )

    # ---- one alert's history ----

    def history_rows(self, row: int, table: str = "epochs") -> np.ndarray:
        """The rows of `table` that catalog row `row`'s packet carried, in packet order (ZTF:
        `prv_candidates`, then the alert's own candidate, `fp_hists` for `forced`; Rubin:
        `prvDiaSources`, then the alert's own diaSource, `prvDiaForcedSources` for `forced`)."""
        rows, _ = self._history_rows([row], table)
        return rows

    def history(self, row: int, table: str = "epochs", columns=None) -> np.ndarray:
        """The rows catalog row `row`'s own packet carried (rows of `table`, packet order, the
        very versions it carried): exactly what that alert knew, nothing from its future.
        `columns` as for `curve`."""
        return self.histories([row], table, columns)[0]

    def histories(self, rows, table: str = "epochs", columns=None) -> list:
        """`history(r, table, columns)` for each of `rows`, reading each chunk they need once."""
        columns = self._table(table).check(columns)
        flat, counts = self._history_rows(rows, table)
        values = _records(self._table(table).take(flat, columns))
        return np.split(values, np.cumsum(counts)[:-1]) if len(counts) else []

    def _history_rows(self, rows, table: str) -> tuple:
        """The table rows the alerts at `rows` carried, one alert after another, and how many
        each carried."""
        self._table(table)
        start_column, count_column = _HISTORY_COLUMNS[table]
        where = self._alerts.take(np.asarray([self._row(r) for r in rows], dtype=np.int64), (start_column, count_column))
        starts, counts = where[start_column].astype(np.int64), where[count_column].astype(np.int64)
        history = self._history[table]
        self._check_pointers(rows, starts, counts, table)
        flat = _take(self._history_caches, table, history, _spans(starts, counts), _cache_limit([history], *self._cache))
        flat = flat.astype(np.int64)
        length = self._tables[table].length
        outside = (flat < 0) | (flat >= length)
        if outside.any():
            at = int(np.argmax(outside))
            alert = int(np.searchsorted(np.cumsum(counts), at, side="right"))
            raise ValueError(
                f"{self.store.path}: {GROUP}/history_{table} is damaged: row {self._row(rows[alert])}'s history holds "
                f"{int(flat[at])}, not a row of {GROUP}/{table} ({length} rows); `ztf2zarr verify` says what else is"
            )
        return flat, counts

    def _check_pointers(self, rows, starts, counts, table: str):
        """Refuse (start, count) pointers of `lightcurves/alerts` that reach outside
        `history_<table>`: read, they would give a short history, or another alert's."""
        length = self._history[table].shape[0]
        start_column, count_column = _HISTORY_COLUMNS[table]
        bad = (starts < 0) | (counts < 0) | (starts + counts > length)
        if bad.any():
            at = int(np.argmax(bad))
            raise ValueError(
                f"{self.store.path}: {GROUP}/alerts is damaged: row {self._row(rows[at])} has {start_column} "
                f"{int(starts[at])} and {count_column} {int(counts[at])}, rows outside {GROUP}/history_{table} "
                f"({length} rows); `ztf2zarr verify` says what else is"
            )

    # ---- checks ----

    def _row(self, row) -> int:
        row = int(row)
        if not -self.rows <= row < self.rows:
            raise IndexError(f"{self.store.path}: row {row} is not in the store ({self.rows} rows)")
        return row % self.rows

    def _table(self, table: str) -> _Table:
        if table not in TABLES:
            raise ValueError(f"table must be one of {TABLES}, not {table!r}")
        return self._tables[table]


def _latest_versions(values: dict, table: str, rows: np.ndarray, survey=ZTF) -> np.ndarray:
    """Positions (into `rows`, ascending) of the latest version of each key: the greatest
    (alert time, alert id) (ZTF: alert_jd, alert_candid), and among versions of one alert the
    first stored (`rows` ascends)."""
    if not len(rows):
        return np.empty(0, np.int64)
    keys = survey.key_arrays(values, table)
    # np.lexsort sorts by its last key first: keys, then alert time, alert id, then store row
    # descending, so the last position of each key's run is the version to keep.
    order = np.lexsort((-rows, values[survey.alert_id_column], values[survey.alert_time_column], *reversed(keys)))
    same_as_next = np.zeros(len(order), dtype=bool)
    same_as_next[:-1] = True
    for k in keys:
        k = k[order]
        same_as_next[:-1] &= k[1:] == k[:-1]
    return np.sort(order[~same_as_next])


def _key_arrays(values: dict, table: str, survey=ZTF) -> list:
    """The numeric arrays that, together, identify an epoch of one object (`Survey.key_arrays`):
    ZTF's epochs by a detection's candid or an upper limit's (jd, fid), with a flag telling the
    two apart."""
    return survey.key_arrays(values, table)


def _records(columns: dict) -> np.ndarray:
    """Columns (name → 1-D array, all of one length) as one numpy structured array; a string
    column becomes `<U{n}` with n its longest value (at least 1), so existing users of the
    structured arrays keep working whatever zarr-python gives for strings."""
    fixed = {name: _fixed_width(values) for name, values in columns.items()}
    length = len(next(iter(fixed.values()))) if fixed else 0
    out = np.empty(length, dtype=[(name, values.dtype) for name, values in fixed.items()])
    for name, values in fixed.items():
        out[name] = values
    return out


def _fixed_width(values: np.ndarray) -> np.ndarray:
    """Variable-length strings (numpy object or StringDType) as `<U{longest}`; other arrays as they are."""
    values = np.asarray(values)
    if values.dtype.kind not in "OT":
        return values
    strings = values.tolist()
    width = max([1, *map(len, strings)])
    return np.array(strings, dtype=f"<U{width}") if strings else np.empty(0, dtype="<U1")


def _spans(starts, counts) -> np.ndarray:
    """Positions start .. start+count-1 of each (start, count), one span after another."""
    parts = [np.arange(start, start + count, dtype=np.int64) for start, count in zip(starts, counts)]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def curve(store, object_id, table: str = "epochs", columns=None, versions: str = "latest", **open_options) -> np.ndarray:
    """One object's light curve (`LightCurves(store, **open_options).curve(object_id, table, columns, versions)`)."""
    return LightCurves(store, **open_options).curve(object_id, table, columns, versions)


def history(store, row: int, table: str = "epochs", columns=None, **open_options) -> np.ndarray:
    """The history catalog row `row` carried (`LightCurves(store, **open_options).history(row, table, columns)`)."""
    return LightCurves(store, **open_options).history(row, table, columns)
