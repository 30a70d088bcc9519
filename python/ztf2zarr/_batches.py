"""Shuffled training batches that read each chunk of the store exactly once per epoch.

An epoch visits the chunks that hold selected rows in an order shuffled by (seed, epoch); the
chunks are dealt round-robin to the workers. Each worker pours its chunks' selected rows into a
shuffle buffer of bounded size (`buffer_mb`); once it holds that many rows, each batch is drawn
at random from all of them and the next chunk is read when it runs low. So every batch is drawn
from the rows of at least as many chunks as the buffer holds, every selected row comes out
once, and only the worker's last batch can be short. Random single-row reads, by contrast,
decompress a whole chunk per row (about 1 ms each in zarr-python 3).

With `history=`, each batch also carries every sample's own light-curve history (the epochs its
own packet carried, never one from its future) as fixed-size arrays a model takes as they are.
With `normalize="zscore_mad"`, each stamp plane is scaled as classifiers take it (`zscore_mad`).
With `variance=True` (stores that have variance planes: Rubin's), each batch also carries the
stamps' variance planes; with `psf=P` (a Rubin store built with `--psf`), each sample's three
PSF images centred in P × P (`_psf.py`). Column names follow the store's survey (`_survey.py`): the time column
is `jd` in a ZTF store and `midpointMjdTai` in a Rubin one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from ._store import Chunk, Store, open_store
from ._survey import LSST, ZTF

#: Default shuffle-buffer size in MB (10**6 bytes): with 21×21 stamps about 48,000 rows, 48 chunks
#: of 1,000 rows.
DEFAULT_BUFFER_MB = 256
#: The light-curve columns of `batches(…, history=True)` on a ZTF store.
DEFAULT_HISTORY = ZTF.default_history
#: The same on a Rubin store (`band` as its position in u g r i z y, 0 … 5).
DEFAULT_HISTORY_LSST = LSST.default_history
#: Names a batch gives its own arrays, which no catalog column may take.
_RESERVED = ("stamps", "variance", "psf", "row", "history", "history_length", "history_mask")
#: What `batches(…, normalize=…)` can do to the stamps: nothing, or `zscore_mad`.
NORMALIZE = ("none", "zscore_mad")
#: MAD × this estimates the standard deviation of normally distributed pixels.
MAD_TO_SIGMA = 1.4826
#: Pixels at or below this hold ZTF's masked-pixel value (−3.4028235e38), not data.
MASKED_AT_OR_BELOW = np.float32(-1e30)


def _median(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The median of each row of `values` (…, n) over its `valid` entries (0 for a row with
    none), exact: invalid entries sort last as +inf, and the middle one or two are read."""
    ordered = np.sort(np.where(valid, values, np.inf), axis=-1)
    count = valid.sum(axis=-1)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0)[..., None] // 2, axis=-1)[..., 0]
    high = np.take_along_axis(ordered, np.minimum(count // 2, values.shape[-1] - 1)[..., None], axis=-1)[..., 0]
    median = (low.astype(np.float64) + high) / 2
    return np.where(count > 0, median, 0.0)


def zscore_mad(stamps: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """Each plane (one channel of one stamp) of `stamps` (…, H, W) as a robust z-score:
    (x − median) / (1.4826 · MAD), MAD the median of |x − median|, both over the plane's valid
    pixels: finite, above ZTF's masked value (≤ −1e30), and not in `missing` (a bool array
    broadcast to `stamps`). Pixels that are not valid become 0, as does every pixel of a plane
    with none; a plane whose MAD is 0 is only centred. float32, of the same shape."""
    x = np.asarray(stamps, dtype=np.float32)
    planes = x.reshape(*x.shape[:-2], -1)
    valid = np.isfinite(planes) & (planes > MASKED_AT_OR_BELOW)
    if missing is not None:
        valid &= ~np.broadcast_to(missing, x.shape).reshape(planes.shape)
    median = _median(planes, valid)
    with np.errstate(invalid="ignore", over="ignore"):
        deviation = np.abs(planes - median[..., None])
    mad = _median(deviation, valid)
    scale = np.where(mad > 0, MAD_TO_SIGMA * mad, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = (planes - median[..., None]) / scale[..., None]
    return np.where(valid, scaled, 0).astype(np.float32).reshape(x.shape)


class _Normalizer:
    """`normalize=` of `batches`: which pixels of a row are missing, as the store stores them.
    NaN and masked pixels are plain to see when the store keeps them; a store that fills missing
    pixels with 0 (its default NaN policy) says only by `stamp_flags` which rows have any (ZTF:
    edge, NaN, masked; Rubin: padded, NaN, no cutout), and in those rows an exact 0 is taken as
    missing (no pixel of the 1,590 real ZTF cutouts of the test data is exactly 0)."""

    def __init__(self, store: Store, normalize: str):
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, not {normalize!r}")
        self.on = normalize == "zscore_mad"
        self.fill_bits = store.survey.fill_bits(store.attrs.get("ztf2zarr") or {})

    @property
    def fields(self) -> tuple:
        """Catalog fields it reads."""
        return ("stamp_flags",) if self.on and self.fill_bits else ()

    def apply(self, batch: dict):
        if not self.on:
            return
        missing = None
        if self.fill_bits:
            filled = (batch["stamp_flags"] & self.fill_bits) != 0
            missing = (batch["stamps"] == 0) & filled[:, None, None, None]
        batch["stamps"] = zscore_mad(batch["stamps"], missing)


def epoch_chunks(chunks: Sequence[int], seed: int, epoch: int) -> np.ndarray:
    """The order in which an epoch visits `chunks`: a permutation fixed by (seed, epoch)."""
    chunks = np.asarray(chunks, dtype=np.int64)
    return chunks[np.random.default_rng([seed, epoch]).permutation(len(chunks))]


def worker_chunks(ordered: Sequence[int], worker: int, num_workers: int) -> np.ndarray:
    """The chunks worker `worker` of `num_workers` reads: every num_workers-th of the epoch's
    order, so the workers' sets are disjoint and together hold every chunk once."""
    if num_workers < 1 or not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} of {num_workers}: need 0 <= worker < num_workers")
    return np.asarray(ordered, dtype=np.int64)[worker::num_workers]


def _selection(store: Store, split, labels) -> tuple:
    """The chunks holding selected rows; for each chunk of a split, the selected positions
    within it (a chunk not in the dict: all of its rows); and the label codes to keep (None:
    all), which are applied as each chunk is read."""
    if split is None:
        return np.arange(store.n_chunks), {}, _label_codes(store, labels)
    rows = store.split_rows(split)
    chunk_of = rows // store.chunk_rows
    chunks, starts = np.unique(chunk_of, return_index=True)
    ends = np.append(starts[1:], len(rows))
    local = {int(c): (rows[a:b] - c * store.chunk_rows) for c, a, b in zip(chunks, starts, ends)}
    return chunks, local, _label_codes(store, labels)


def _label_codes(store: Store, labels) -> np.ndarray | None:
    if labels is None:
        return None
    by_name = {name: code for code, name in store.classes.items()}
    codes = []
    for label in [labels] if isinstance(labels, (str, int)) else labels:
        if isinstance(label, str):
            if label not in by_name:
                raise ValueError(f"{store.path}: no label {label!r} (classes: {sorted(by_name) or 'none, the store is unlabeled'})")
            codes.append(by_name[label])
        else:
            codes.append(int(label))
    return np.asarray(codes, dtype=np.int16)


def _check_columns(store: Store, columns) -> tuple:
    columns = (columns,) if isinstance(columns, str) else tuple(columns)
    unknown = [c for c in columns if c not in store.columns]
    if unknown:
        raise ValueError(f"{store.path}: no catalog column {', '.join(map(repr, unknown))}")
    clash = [c for c in columns if c in _RESERVED]
    if clash:
        raise ValueError(f"column name {clash[0]!r} is reserved for the batch itself")
    return tuple(dict.fromkeys(("label_code", *columns)))


class _Histories:
    """Each sample's own light-curve history (`lightcurves/alerts` → `history_epochs`), as
    arrays of one shape for the whole batch: the `length` most recent epochs by time (the
    survey's time column), padded with zeros after them, and a mask of the real ones. Only the
    alert's own packet is read, so a sample never sees an epoch from its future. The survey's
    band column, if it holds strings (Rubin), is given as band codes (`Survey.band_codes`)."""

    def __init__(self, store: Store, columns, length: int, relative_time: bool):
        from ._lightcurves import LightCurves

        if length < 1:
            raise ValueError(f"history_len must be at least 1, not {length}")
        self.curves = LightCurves(store)  # ValueError for a store without light curves
        self.columns = (columns,) if isinstance(columns, str) else tuple(columns)
        dtypes = self.curves.dtypes("epochs")
        unknown = [c for c in self.columns if c not in dtypes]
        if unknown or not self.columns:
            raise ValueError(f"{store.path}: history columns must be columns of lightcurves/epochs, not {unknown or 'none'}")
        self.survey = store.survey
        self.time = self.survey.time_column
        strings = [c for c in self.columns if dtypes[c].kind not in "biuf" and c != self.survey.band_column]
        if strings:
            raise ValueError(f"history column {strings[0]!r} holds strings; the history array is float32")
        self.length = length
        self.relative_time = relative_time

    def add_to(self, batch: dict, alert_jd: np.ndarray | None):
        """Put `history`, `history_length` and `history_mask` into `batch`."""
        size = len(batch["row"])
        time = self.time
        read = tuple(dict.fromkeys((*self.columns, time)))  # the time orders the epochs
        values = np.zeros((size, self.length, len(self.columns)), np.float32)
        mask = np.zeros((size, self.length), bool)
        lengths = np.zeros(size, np.int64)
        for i, rows in enumerate(self.curves.histories(batch["row"], "epochs", columns=read)):
            recent = rows[np.argsort(rows[time], kind="stable")][-self.length :]
            for j, name in enumerate(self.columns):
                column = recent[name]
                column = (self.survey.band_codes(column) if name == self.survey.band_column else column).astype(np.float64)
                # float32 cannot hold an absolute jd to better than a quarter of a day.
                values[i, : len(recent), j] = column - alert_jd[i] if self.relative_time and name == time else column
            mask[i, : len(recent)] = True
            lengths[i] = len(recent)
        batch.update(history=values, history_length=lengths, history_mask=mask)


class _Spare:
    """The memory of the last finished epoch (its shuffle buffer and decode scratch), kept for
    the next epoch of the same layout in this process. Fresh memory costs a page fault per page
    on first touch; refilling a 100 MB buffer measured as long as decoding the chunks into it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._kept: dict = {}

    def take(self, key, make):
        with self._lock:
            kept = self._kept.pop(key, None)
        return kept if kept is not None else make()

    def give_back(self, key, value):
        with self._lock:
            self._kept = {k: v for k, v in self._kept.items() if k[0] != key[0]}  # one of each kind
            self._kept[key] = value


_spare = _Spare()


class _Buffer:
    """Preallocated arrays with room for `capacity` + one chunk of rows. Each batch is drawn
    uniformly from every row held; the slots it frees take the next chunk's rows, so a row is
    copied once in and once out (only the slot numbers move)."""

    def __init__(self, capacity: int, chunk_rows: int, template: Chunk):
        self.size = capacity + chunk_rows
        self.capacity = capacity
        self.arrays = {"stamps": np.empty((self.size, *template.stamps.shape[1:]), template.stamps.dtype),
                       "row": np.empty(self.size, np.int64)}
        if template.variance is not None:
            self.arrays["variance"] = np.empty((self.size, *template.variance.shape[1:]), template.variance.dtype)
        for name, values in template.fields.items():
            self.arrays[name] = np.empty(self.size, values.dtype)
        self.held = np.empty(self.size, np.int64)  # held[:n]: the slots holding rows
        self.free = np.empty(self.size, np.int64)  # free[:n_free]: the empty slots
        self.empty()

    def empty(self):
        self.n = 0
        self.free[:] = np.arange(self.size)[::-1]  # taken from the end: slots 0, 1, 2, … first
        self.n_free = self.size

    def add(self, chunk: Chunk, keep: np.ndarray | None):
        parts = {"stamps": chunk.stamps, "row": chunk.row, **chunk.fields}
        if chunk.variance is not None:
            parts["variance"] = chunk.variance
        count = len(chunk.row) if keep is None else int(keep.sum())
        slots = self.free[self.n_free - count : self.n_free][::-1]
        for name, values in parts.items():
            self.arrays[name][slots] = values if keep is None else values[keep]
        self.held[self.n : self.n + count] = slots
        self.n += count
        self.n_free -= count

    def take(self, size: int, rng: np.random.Generator) -> dict:
        """Remove `size` rows chosen at random and return them as a batch, in random order."""
        n = self.n
        picked = rng.choice(n, size, replace=False)
        slots = self.held[picked]
        batch = {name: array[slots] for name, array in self.arrays.items()}
        holes = picked[picked < n - size]
        movers = np.setdiff1d(np.arange(n - size, n), picked, assume_unique=True)
        self.held[holes] = self.held[movers]
        self.n = n - size
        self.free[self.n_free : self.n_free + size] = slots
        self.n_free += size
        return batch


def _read_ahead(store: Store, chunks, local: dict, fields: tuple, depth: int, variance: bool = False) -> Iterator[Chunk]:
    """Each of `chunks`, read in order, `depth` chunks ahead on a background thread (numcodecs'
    decompression releases the GIL); depth 0 reads in the caller's thread. Chunks are decoded
    into `depth` + 1 reused scratch sets; a chunk yielded stays valid until the next is asked for."""
    def read(c, scratch):
        return store.read(int(c), local.get(int(c)), fields, scratch, variance)

    key = ("scratch", store.stamps.chunks, store.catalog.dtype, depth, variance)
    sets = _spare.take(key, lambda: [store.scratch(variance) for _ in range(depth + 1)])
    try:
        yield from _read_with(read, chunks, sets, depth)
    finally:
        _spare.give_back(key, sets)


def _read_with(read, chunks, sets: list, depth: int) -> Iterator[Chunk]:
    if depth <= 0:
        for c in chunks:
            yield read(c, sets[0])
        return
    free: queue.Queue = queue.Queue()
    for scratch in sets:
        free.put(scratch)
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for c in chunks:
                while True:  # wait for a free scratch set, or for the consumer to stop
                    try:
                        scratch = free.get(timeout=0.1)
                        break
                    except queue.Empty:
                        if stop.is_set():
                            return
                ready.put((read(c, scratch), scratch))
            ready.put(done)
        except BaseException as error:  # handed to the consumer, raised there
            ready.put(error)

    thread = threading.Thread(target=produce, name="ztf2zarr-prefetch", daemon=True)
    thread.start()
    held = None
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            if held is not None:
                free.put(held)
            chunk, held = item
            yield chunk
    finally:
        stop.set()
        thread.join()


def batches(
    store,
    batch_size: int = 256,
    seed: int = 0,
    epoch: int = 0,
    split: str | None = None,
    columns: Sequence[str] = (),
    buffer_mb: float = DEFAULT_BUFFER_MB,
    *,
    labels=None,
    worker: int = 0,
    num_workers: int = 1,
    prefetch: int = 2,
    engine: str = "auto",
    storage_options: dict | None = None,
    history=None,
    history_len: int = 64,
    history_relative_time: bool = False,
    normalize: str = "none",
    variance: bool = False,
    psf: int | None = None,
) -> Iterator[dict]:
    """Shuffled batches of one epoch of a ztf2zarr store, reading each chunk once.

    Each batch is a dict of numpy arrays of the same length (`batch_size`; only the last may be
    shorter): `stamps` (B, 3, S, S) float32, `row` (the store row of each sample, int64),
    `label_code` (int16, -1 unlabeled), and one array per name in `columns` (catalog fields).
    The same for a ZTF and a Rubin store; only the catalog's column names differ (the time
    column, `jd` or `midpointMjdTai`, below is the store survey's).

    - `seed`, `epoch`: the same pair gives the same batches; another epoch another order.
    - `split`: "train", "val" or "test" reads only the rows of `splits/NAME`.
    - `labels`: a label name or code, or a list of them: only rows with those labels.
    - `buffer_mb`: the shuffle buffer's size (see `buffer_rows`; at least one batch). Memory is
      about the buffer plus `prefetch` + 2 chunks.
    - `worker`, `num_workers`: this reader's share of the chunks (see `worker_chunks`); the
      shares of workers 0 … n-1 together cover every selected row once.
    - `prefetch`: chunks read ahead on a background thread (0: none).
    - `engine`: "direct" (chunks fetched whole and decoded with numcodecs), "zarr"
      (zarr-python), or "auto" (direct for a folder or a URL, zarr for any other store object).
    - `storage_options`: for a store named by URL (`s3://bucket/x.zarr`, `gs://…`, `az://…`),
      the fsspec file system's options, e.g. `{"endpoint_url": …, "key": …, "secret": …}` for
      s3fs (None: fsspec's defaults, which read the usual environment variables).
    - `history`: light-curve columns of `lightcurves/epochs` to add each sample's own history
      as (True: the survey's default, `DEFAULT_HISTORY` for ZTF, `DEFAULT_HISTORY_LSST` for
      Rubin; None: no history). The batch then also holds `history`
      (B, `history_len`, k) float32: the sample's `history_len` most recent epochs by time, from
      its own packet only (values as stored, NaN where missing; Rubin's `band` as its position
      in u g r i z y), padded with 0 after them;
      `history_length` (B,) int64, the epochs kept; `history_mask` (B, `history_len`) bool,
      True for each real epoch.
    - `history_relative_time`: give the time column in the history (`jd`, or Rubin's
      `midpointMjdTai`) as time − the alert's own time (days, ≤ 0), which float32 holds to the
      second; an absolute jd in float32 is rounded to 0.25 day.
    - `normalize`: "none" (stamps as stored) or "zscore_mad": each plane (one channel of one
      stamp) becomes (x − median) / (1.4826 · MAD) over its valid pixels, and its missing pixels
      (NaN, ZTF's masked value, a clipped cutout's fill; in a store that stores them as 0, an
      exact 0 in a row whose `stamp_flags` say it has some) become 0 (see `zscore_mad`).
    - `variance`: also give `variance` (B, 3, S, S) float32, the variance of each stamp pixel
      (Rubin's UNCERT planes, nJy², on the stamps' window; filled pixels hold the fill), read
      from the same chunks. A store without variance planes (ZTF's, or built with
      --no-variance) is a ValueError. `normalize` leaves it as stored.
    - `psf`: a side P: also give `psf` (B, 3, P, P) float32, each sample's PSF images (science,
      template, difference; a Rubin store built with `--psf`, else a ValueError), each at its
      own size in the store, centred here: pixel n // 2 of a side n lands on pixel P // 2,
      cropped or padded with 0; a cutout without a PSF image gives all 0. `Store.psf(row)` gives
      them at their own size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if not buffer_mb > 0:
        raise ValueError(f"buffer_mb must be positive, not {buffer_mb}")
    store = open_store(store, engine, storage_options)
    fields = _check_columns(store, columns)
    normalizer = _Normalizer(store, normalize)
    if variance:
        store.scratch(variance=True)  # a ValueError, now, for a store without variance planes
    psfs = None
    if psf is not None:
        from ._psf import Psf

        psfs = (Psf(store), psf)
        psfs[0].fixed([], psf)  # a ValueError, now, for a side that is not one
    histories = None
    if history is not None and history is not False:
        histories = _Histories(store, store.survey.default_history if history is True else history, history_len,
                               history_relative_time)
    # Relative time needs each alert's own time, and normalising a store that fills missing
    # pixels with 0 each row's stamp_flags: read with the catalog fields even if not asked for.
    time = store.survey.time_column
    needed = ((time,) if histories is not None and history_relative_time else ()) + normalizer.fields
    dropped = tuple(f for f in needed if f not in fields)
    fields = (*fields, *dropped)
    chunks, local, codes = _selection(store, split, labels)
    mine = worker_chunks(epoch_chunks(chunks, seed, epoch), worker, num_workers)
    if len(mine) == 0:
        return
    rng = np.random.default_rng([seed, epoch, worker, num_workers])
    capacity = buffer_rows(store, buffer_mb, batch_size, columns, variance=variance)
    key = ("buffer", capacity, store.chunk_rows, store.stamps.chunks, tuple((f, store.catalog.dtype.fields[f][0]) for f in fields),
           bool(variance))
    buffer = None
    try:
        for chunk in _read_ahead(store, mine, local, fields, prefetch, bool(variance)):
            if buffer is None:
                buffer = _spare.take(key, lambda: _Buffer(capacity, store.chunk_rows, chunk))
                buffer.empty()
            buffer.add(chunk, None if codes is None else np.isin(chunk.fields["label_code"], codes))
            while buffer.n >= buffer.capacity:
                yield _finish(buffer.take(batch_size, rng), histories, normalizer, dropped, time, psfs)
        while buffer.n > 0:
            yield _finish(buffer.take(min(batch_size, buffer.n), rng), histories, normalizer, dropped, time, psfs)
    finally:
        if buffer is not None:
            _spare.give_back(key, buffer)


def _finish(batch: dict, histories: _Histories | None, normalizer: _Normalizer, dropped: tuple, time: str,
            psfs: tuple | None = None) -> dict:
    """The batch with its samples' histories and PSF images (`psfs`: the store's `Psf` and the
    side asked for) and its stamps normalised, without the fields read only for them (`time`:
    the survey's time column)."""
    if psfs is not None:
        batch["psf"] = psfs[0].fixed(batch["row"], psfs[1])
    if histories is not None:
        histories.add_to(batch, batch[time] if time in batch else None)
    normalizer.apply(batch)
    for name in dropped:
        del batch[name]
    return batch


def buffer_rows(store, buffer_mb: float = DEFAULT_BUFFER_MB, batch_size: int = 256, columns: Sequence[str] = (),
                storage_options: dict | None = None, variance: bool = False) -> int:
    """Rows the shuffle buffer of `batches(store, …)` holds before it hands out a batch:
    `buffer_mb` over the bytes of one row (stamps, variance if asked for, row, label_code and
    the columns), and at least one batch. Every batch is drawn from at least this many rows."""
    store = open_store(store, "auto", storage_options)
    fields = _check_columns(store, columns)
    stamp_bytes = int(np.prod(store.stamps.chunks[1:])) * store.stamps.dtype.itemsize * (2 if variance else 1)
    row_bytes = stamp_bytes + 8 + sum(store.catalog.dtype.fields[f][0].itemsize for f in fields)
    return max(int(buffer_mb * 1e6) // row_bytes, batch_size)


def count_rows(store, split: str | None = None, labels=None, engine: str = "auto",
               storage_options: dict | None = None) -> int:
    """How many rows an epoch of `batches(store, split=…, labels=…)` yields."""
    store = open_store(store, engine, storage_options)
    chunks, local, codes = _selection(store, split, labels)
    if codes is None:
        return int(sum(len(local[int(c)]) if int(c) in local else np.subtract(*store.chunk_span(int(c))[::-1]) for c in chunks))
    return int(sum(np.isin(store.labels_of(int(c), local.get(int(c))), codes).sum() for c in chunks))
