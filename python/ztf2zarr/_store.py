"""Reading whole chunks of a ztf2zarr store: the `stamps` rows (and `variance` rows, in a store
that has them: Rubin's) and the `catalog` fields of one chunk, the row-index arrays of `splits/`,
and any other array by name (`Store.array`, which the light-curve reader uses). `Store.survey`
says whose alerts the store holds (`_survey.py`: ZTF or Rubin), from its root attributes.

Two engines give the same arrays. `direct` reads each chunk as one whole object and decodes it
with numcodecs as each array's `.zarray` says (compressor, filters such as shuffle and vlen-utf8,
dtype, chunk shape, key separator); it skips zarr-python's
per-call machinery. Variable-length strings (`|O` with the vlen-utf8 filter) come back as numpy
object arrays from the direct engine, and as zarr-python gives them (object in 2.18,
StringDType in 3.x) from the zarr engine. It reads
a local store folder as files, and a store at a URL (`s3://`, `gs://`, `az://`, any fsspec
protocol) through fsspec, fetching a chunk's stamps and catalog objects together. `zarr` goes
through zarr-python (2.18 or 3.x) and serves any store zarr-python opens. Neither serves a
missing chunk as fill, nor a split's damaged row indices (see `split_problem`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._survey import Survey, survey_of

STAMPS = "stamps"
VARIANCE = "variance"
CATALOG = "catalog"
SPLITS = "splits"
ENGINES = ("auto", "direct", "zarr")


def _dtype(spec) -> np.dtype:
    if isinstance(spec, list):
        return np.dtype([tuple(field) for field in spec])
    return np.dtype(spec)


def is_url(path) -> bool:
    """Whether `path` names a store by URL (`s3://bucket/x.zarr`, `file:///…`) rather than a folder."""
    return isinstance(path, str) and "://" in path


class _LocalFiles:
    """The keys of a local store folder, read as files."""

    def __init__(self, root: Path):
        self.root = root

    def where(self, key: str) -> str:
        return str(self.root / key)

    def get(self, key: str) -> bytes | None:
        """The bytes of `key`, or None if there is no such file."""
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def get_many(self, keys: list) -> list:
        return [self.get(key) for key in keys]

    def children(self, prefix: str) -> list:
        """The names of the folders directly under `prefix`."""
        folder = self.root / prefix
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def entries(self, prefix: str) -> set:
        """The names of the files and folders directly under `prefix` (one listing)."""
        try:
            with os.scandir(self.root / prefix) as found:
                return {entry.name for entry in found}
        except (FileNotFoundError, NotADirectoryError):
            return set()


class _RemoteFiles:
    """The keys of a store at an fsspec URL: each object fetched whole (one GET), several at once
    where the file system is asynchronous (s3fs, gcsfs, adlfs), so a chunk of stamps and its
    catalog chunk cost one round trip, not two."""

    def __init__(self, url: str, storage_options: dict | None):
        import fsspec

        self.url = url.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.root = root.rstrip("/")

    def where(self, key: str) -> str:
        return f"{self.url}/{key}"

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            return None

    def get_many(self, keys: list) -> list:
        paths = [self._path(key) for key in keys]
        fetched = self.fs.cat(paths, on_error="return")
        values = []
        for key, path in zip(keys, paths):
            value = fetched[path] if path in fetched else self.get(key)
            if isinstance(value, FileNotFoundError):
                value = None
            elif isinstance(value, BaseException):
                raise OSError(f"{self.where(key)}: cannot be read ({value})") from value
            values.append(value)
        return values

    def children(self, prefix: str) -> list:
        try:
            entries = self.fs.ls(self._path(prefix), detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")

    def entries(self, prefix: str) -> set:
        """The names of the objects and folders directly under `prefix` (one listing)."""
        try:
            names = self.fs.ls(self._path(prefix), detail=False)
        except FileNotFoundError:
            return set()
        return {name.rstrip("/").rsplit("/", 1)[-1] for name in names}


def _missing(where: str, index: int, name: str) -> ValueError:
    """The error for chunk `index` of array `name` absent from the store (`where`: its key)."""
    return ValueError(f"{where}: chunk {index} of `{name}` is missing: the store is damaged "
                      "(ztf2zarr writes every chunk; `ztf2zarr verify` says what else is)")


class _DirectArray:
    """One Zarr v2 array of a store, decoded chunk by chunk with numcodecs."""

    def __init__(self, files, prefix: str, zarray: dict):
        import numcodecs

        self.files = files
        self.prefix = prefix
        where = files.where(f"{prefix}/.zarray")
        if zarray.get("zarr_format") != 2:
            raise ValueError(f"{where}: not a Zarr v2 array")
        if zarray.get("order", "C") != "C":
            raise ValueError(f"{where}: order {zarray['order']!r} (only C order is read directly)")
        self.shape = tuple(zarray["shape"])
        self.chunks = tuple(zarray["chunks"])
        self.dtype = _dtype(zarray["dtype"])
        self.separator = zarray.get("dimension_separator") or "."
        compressor = zarray.get("compressor")
        self.compressor = numcodecs.get_codec(compressor) if compressor else None
        self.filters = [numcodecs.get_codec(f) for f in zarray.get("filters") or []]
        fill = zarray.get("fill_value")
        self.fill = 0 if fill is None or self.dtype.fields else fill
        if self.dtype.kind == "O":
            self.fill = "" if fill is None else fill

    @property
    def is_object(self) -> bool:
        """Whether the array holds variable-length values (vlen-utf8 strings), decoded to objects."""
        return self.dtype.kind == "O"

    @property
    def chunk_bytes(self) -> int:
        return int(np.prod(self.chunks)) * self.dtype.itemsize

    def scratch(self) -> list | None:
        """Two buffers of one decoded chunk, for `chunk(…, scratch)` to decode into (None for
        variable-length values, whose decoded size is not known in advance)."""
        if self.is_object:
            return None
        return [np.empty(self.chunk_bytes, np.uint8), np.empty(self.chunk_bytes, np.uint8)]

    def key(self, index: int) -> str:
        """The store key of chunk `index` along axis 0."""
        return f"{self.prefix}/" + self.separator.join([str(index)] + ["0"] * (len(self.shape) - 1))

    def chunk(self, index: int, scratch: list | None = None) -> np.ndarray:
        """The whole chunk `index` along axis 0 (padding rows included), decoded. With
        `scratch`, it is decoded into those buffers and the result is a view of them: reusing
        memory spares the page faults of two fresh chunk-sized allocations per chunk, which
        measured as long as the decompression itself."""
        return self.decode(index, self.files.get(self.key(index)), scratch)

    def decode(self, index: int, data: bytes | None, scratch: list | None = None) -> np.ndarray:
        """Chunk `index` from its stored bytes (None: the chunk is missing, an error: ztf2zarr
        writes every chunk of its arrays, so a missing one is damage, never rows of fill)."""
        where = self.files.where(self.key(index))
        if data is None:
            raise _missing(where, index, self.prefix)
        if scratch is not None and self.compressor is not None and self.compressor.codec_id == "zstd":
            # Decoded into a chunk-sized buffer, a short frame would leave the rest of it as it
            # was (the previous chunk's bytes): check the size the frame declares first.
            declared = _zstd_content_size(data)
            if declared is None:
                scratch = None  # decoded afresh, and its length checked below
            elif declared != self.chunk_bytes:
                raise ValueError(f"{where}: chunk decodes to {declared} bytes, expected {self.chunk_bytes}")
        try:
            step = 0
            if self.compressor is not None:
                data = self._decode(self.compressor, data, scratch, step)
                step += 1
            for codec in reversed(self.filters):
                data = self._decode(codec, data, scratch, step)
                step += 1
        except Exception as error:  # numcodecs raises RuntimeError, ValueError, …
            raise ValueError(f"{where}: chunk does not decode ({error})") from error
        if self.is_object:
            return self._objects(where, data)
        flat = np.frombuffer(memoryview(data), dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data)
        raw = flat.reshape(-1).view(np.uint8)
        if raw.nbytes != self.chunk_bytes:
            raise ValueError(f"{where}: chunk decodes to {raw.nbytes} bytes, expected {self.chunk_bytes}")
        return raw.view(self.dtype).reshape(self.chunks)

    def _objects(self, where: str, data) -> np.ndarray:
        """A decoded chunk of variable-length values: the object array the vlen filter made."""
        values = np.asarray(data)
        if values.dtype.kind != "O" or values.size != int(np.prod(self.chunks)):
            raise ValueError(f"{where}: chunk decodes to {values.size} values of {values.dtype}, "
                             f"expected {int(np.prod(self.chunks))} objects")
        return values.reshape(self.chunks)

    @staticmethod
    def _decode(codec, data, scratch, step):
        if scratch is None:
            return codec.decode(data)
        return codec.decode(data, out=scratch[step % 2])

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of a 1-D array, reading the chunks that hold them."""
        size = self.chunks[0]
        parts = [self.chunk(c)[max(start - c * size, 0) : stop - c * size] for c in range(start // size, -(-stop // size))]
        return np.concatenate(parts) if parts else np.empty(0, dtype=self.dtype)

    def take(self, rows: np.ndarray, cache: dict | None = None) -> np.ndarray:
        """Rows at the positions `rows` of a 1-D array, in that order, each chunk that holds one
        of them fetched and decoded once (all fetched together: one round trip to object
        storage). `cache` (chunk index → decoded chunk) is consulted and filled."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(len(rows), dtype=self.dtype)
        if len(rows) == 0:
            return out
        cache = {} if cache is None else cache
        size = self.chunks[0]
        which = rows // size
        chunks = [int(c) for c in np.unique(which)]
        needed = [c for c in chunks if c not in cache]
        for index, data in zip(needed, self.files.get_many([self.key(c) for c in needed])):
            cache[index] = self.decode(index, data)
        for index in chunks:
            at = which == index
            out[at] = cache[index][rows[at] - index * size]
        return out


def split_problem(rows: np.ndarray, catalog_rows: int) -> str | None:
    """What is wrong with the row indices of one split (None: nothing): each must be a catalog
    row, and they must ascend with none repeated, as `ztf2zarr split` writes them."""
    if not len(rows):
        return None
    outside = rows[(rows < 0) | (rows >= catalog_rows)]
    if len(outside):
        return f"row {int(outside[0])} is not a catalog row (the catalog has {catalog_rows} rows)"
    steps = np.diff(rows)
    if (steps <= 0).any():
        at = int(np.argmax(steps <= 0))
        if steps[at] == 0:
            return f"row {int(rows[at])} is listed twice"
        return f"rows do not ascend (row {int(rows[at + 1])} follows row {int(rows[at])})"
    return None


def _zstd_content_size(frame: bytes) -> int | None:
    """The decompressed size a zstd frame's header declares, or None when it declares none (or
    is not a zstd frame: decoding then says why)."""
    if len(frame) < 6 or int.from_bytes(frame[:4], "little") != 0xFD2FB528:
        return None
    descriptor = frame[4]
    size_flag, single_segment, dictionary_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dictionary_flag]
    width = (1 if single_segment else 0, 2, 4, 8)[size_flag]
    if width == 0 or len(frame) < at + width:
        return None
    size = int.from_bytes(frame[at : at + width], "little")
    return size + 256 if width == 2 else size


class _ZarrArray:
    """The same interface through zarr-python. zarr-python reads a missing chunk as fill values
    (`candid` 0 and `label_code` 0, a real class, beside real stamps); ztf2zarr writes every
    chunk of its arrays, so a missing one is damage. With `files` (the store's folder or URL),
    the array's chunk keys are listed once, at its first read, and a read that needs a chunk
    not among them is refused; without (a store object zarr-python was given), it is read as
    zarr-python reads it."""

    def __init__(self, array, files=None, name: str = ""):
        self.array = array
        self.shape = tuple(array.shape)
        self.chunks = tuple(array.chunks)
        self.dtype = array.dtype
        self.files = files
        self.name = name
        self._listed = None

    def scratch(self):
        return None

    def key(self, index: int) -> str:
        """The store key of chunk `index` along axis 0, with ztf2zarr's "." separator."""
        return f"{self.name}/" + ".".join([str(index)] + ["0"] * (len(self.shape) - 1))

    def _require(self, indices):
        """Refuse the read if any chunk (along axis 0) of `indices` is not in the store."""
        if self.files is None:
            return
        if self._listed is None:
            self._listed = self.files.entries(self.name)
        for index in indices:
            index = int(index)
            dotted = self.key(index).rsplit("/", 1)[-1]
            # A "/" separator keeps the chunks of a multi-dimensional array in a folder per index.
            if dotted not in self._listed and not (len(self.shape) > 1 and str(index) in self._listed):
                raise _missing(self.files.where(self.key(index)), index, self.name)

    def chunk(self, index: int, scratch=None) -> np.ndarray:
        self._require([index])
        size = self.chunks[0]
        return np.asarray(self.array[index * size : min((index + 1) * size, self.shape[0])])

    def rows(self, start: int, stop: int) -> np.ndarray:
        size = self.chunks[0]
        self._require(range(start // size, -(-min(stop, self.shape[0]) // size)))
        return np.asarray(self.array[start:stop])

    def take(self, rows: np.ndarray, cache: dict | None = None) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.empty(0, dtype=self.dtype)
        self._require(np.unique(rows[(rows >= 0) & (rows < self.shape[0])] // self.chunks[0]))
        # Coordinate selection reads structured arrays in zarr-python 2.18 and 3.x alike.
        return np.asarray(self.array.get_coordinate_selection(rows))


@dataclass
class Chunk:
    """The selected rows of one chunk: their store rows, stamps, catalog fields, and variance
    planes (None unless asked for)."""

    index: int
    row: np.ndarray
    stamps: np.ndarray
    fields: dict
    variance: np.ndarray | None = None


class Store:
    """An open store: its survey, shapes, chunking, label classes, splits, and whole-chunk reads.
    `variance` is the array of the stamps' variance planes, or None in a store without (ZTF's,
    or one built with --no-variance)."""

    def __init__(self, path, engine: str = "auto", storage_options: dict | None = None):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        self.path = path
        remote = is_url(path)
        local = not remote and isinstance(path, (str, os.PathLike)) and Path(path).is_dir()
        if not local and not remote and isinstance(path, (str, os.PathLike)):
            raise FileNotFoundError(f"{path}: no such store folder")
        if storage_options is not None and not remote:
            raise ValueError(f"{path}: storage_options are for a store named by URL (s3://…, gs://…)")
        if engine == "auto":
            engine = "direct" if local or remote else "zarr"
        if engine == "direct" and not (local or remote):
            raise ValueError(f"{path!r}: the direct engine reads store folders and URLs; use engine='zarr'")
        self.engine = engine
        if engine == "direct":
            self._open_direct(_RemoteFiles(path, storage_options) if remote else _LocalFiles(Path(path)))
        else:
            self._open_zarr(path, storage_options)
        self.rows = self.stamps.shape[0]
        self.chunk_rows = self.stamps.chunks[0]
        if self.catalog.shape[0] != self.rows or self.catalog.chunks[0] != self.chunk_rows:
            raise ValueError(f"{path}: catalog and stamps disagree in rows or chunking")
        if self.variance is not None and (self.variance.shape != self.stamps.shape or self.variance.chunks != self.stamps.chunks):
            raise ValueError(f"{path}: variance and stamps disagree in shape or chunking")
        self.survey: Survey = survey_of(self.attrs)
        self.n_chunks = -(-self.rows // self.chunk_rows)

    def _open_direct(self, files):
        metadata = self._metadata(files)
        if not metadata:
            raise FileNotFoundError(f"{files.where('')}: no store there (neither .zmetadata nor .zgroup)")
        for key in (".zgroup", f"{STAMPS}/.zarray", f"{CATALOG}/.zarray"):
            if key not in metadata:
                raise ValueError(f"{files.where('')}: not a ztf2zarr store (no {key})")
        self.attrs = metadata.get(".zattrs", {})
        self._files, self._direct_metadata, self._root = files, metadata, None
        self.stamps = _DirectArray(files, STAMPS, metadata[f"{STAMPS}/.zarray"])
        self.catalog = _DirectArray(files, CATALOG, metadata[f"{CATALOG}/.zarray"])
        zarray = metadata.get(f"{VARIANCE}/.zarray")
        self.variance = _DirectArray(files, VARIANCE, zarray) if zarray is not None else None
        self._split_arrays = {
            key.split("/")[1]: _DirectArray(files, key.rsplit("/", 1)[0], value)
            for key, value in metadata.items()
            if key.startswith(f"{SPLITS}/") and key.endswith("/.zarray") and key.count("/") == 2
        }

    @staticmethod
    def _metadata(files) -> dict:
        """The consolidated metadata, or else the few metadata keys the reader uses, each read
        by name (listing every chunk of a large store would cost more than the read)."""
        consolidated = files.get(".zmetadata")
        if consolidated is not None:
            return json.loads(consolidated)["metadata"]
        keys = [".zgroup", ".zattrs", f"{STAMPS}/.zarray", f"{CATALOG}/.zarray", f"{VARIANCE}/.zarray"]
        keys += [f"{SPLITS}/{name}/.zarray" for name in files.children(SPLITS)]
        found = zip(keys, files.get_many(keys))
        return {key: json.loads(raw) for key, raw in found if raw is not None}

    def _open_zarr(self, path, storage_options):
        import zarr

        if is_url(path):
            root = zarr.open(path, mode="r", storage_options=storage_options or {})
        else:
            root = zarr.open(str(path) if isinstance(path, os.PathLike) else path, mode="r")
        self.attrs = dict(root.attrs)
        self._root = root
        # The store's own files, for listing each array's chunks (None: a store object).
        if is_url(path):
            self._files = _RemoteFiles(path, storage_options)
        elif isinstance(path, (str, os.PathLike)):
            self._files = _LocalFiles(Path(path))
        else:
            self._files = None
        self.stamps = self._zarr_array(STAMPS)
        self.catalog = self._zarr_array(CATALOG)
        self.variance = self._zarr_array(VARIANCE) if self.node(VARIANCE) == "array" else None
        self._split_arrays = {}
        if SPLITS in root:
            self._split_arrays = {name: self._zarr_array(f"{SPLITS}/{name}") for name in ("train", "val", "test") if name in root[SPLITS]}

    def _zarr_array(self, name: str) -> _ZarrArray:
        return _ZarrArray(self._root[name], self._files, name)

    def array(self, name: str):
        """The array `name`, read through this store's engine (chunk, rows and take)."""
        if self._root is not None:
            if self.node(name) != "array":
                raise KeyError(f"{self.path}: no array {name!r} in the store")
            return self._zarr_array(name)
        zarray = self._metadata_key(f"{name}/.zarray")
        if zarray is None:
            raise KeyError(f"{self._files.where(name)}: no such array in the store")
        return _DirectArray(self._files, name, zarray)

    def node(self, name: str) -> str | None:
        """What `name` is in the store: "array", "group", or None when there is nothing there."""
        if self._root is not None:
            try:
                found = self._root[name]
            except KeyError:
                return None
            return "array" if hasattr(found, "shape") else "group"
        if self._metadata_key(f"{name}/.zarray") is not None:
            return "array"
        return "group" if self._metadata_key(f"{name}/.zgroup") is not None else None

    def node_attrs(self, name: str) -> dict:
        """The attributes (`.zattrs`) of the array or group `name` ({} if it has none)."""
        if self._root is not None:
            return dict(self._root[name].attrs)
        return self._metadata_key(f"{name}/.zattrs") or {}

    def _metadata_key(self, key: str) -> dict | None:
        """One metadata document (None: no such key), from .zmetadata if it lists the key, else
        read by name. Both answers are kept, absent keys too: telling a group from an array
        asks for a key that is not there, and on object storage each ask is a round trip."""
        if key not in self._direct_metadata:
            raw = self._files.get(key)
            self._direct_metadata[key] = None if raw is None else json.loads(raw)
        return self._direct_metadata[key]

    @property
    def columns(self) -> tuple:
        """The catalog's column names."""
        return tuple(self.catalog.dtype.names)

    @property
    def classes(self) -> dict:
        """label_code → label, from the root attrs ({} for an unlabeled store)."""
        labels = (self.attrs.get("ztf2zarr") or {}).get("labels") or {}
        return {int(code): name for code, name in (labels.get("classes") or {}).items()}

    @property
    def splits(self) -> tuple:
        return tuple(self._split_arrays)

    def split_rows(self, name: str) -> np.ndarray:
        """The row indices of `splits/NAME`, ascending."""
        if name not in self._split_arrays:
            have = ", ".join(self._split_arrays) or "none: run `ztf2zarr split` first"
            raise KeyError(f"{self.path}: no split {name!r} (splits: {have})")
        array = self._split_arrays[name]
        rows = np.asarray(array.rows(0, array.shape[0]), dtype=np.int64)
        problem = split_problem(rows, self.rows)
        if problem:
            raise ValueError(f"{self.path}: {SPLITS}/{name} is damaged: {problem} "
                             "(`ztf2zarr verify` says what else is; `ztf2zarr split` writes the splits anew)")
        return rows

    def chunk_span(self, index: int) -> tuple:
        """Store rows [start, stop) held by chunk `index`."""
        start = index * self.chunk_rows
        return start, min(start + self.chunk_rows, self.rows)

    def scratch(self, variance: bool = False) -> dict:
        """Reusable decode buffers for one chunk of the arrays `read` reads (see `read`)."""
        buffers = {STAMPS: self.stamps.scratch(), CATALOG: self.catalog.scratch()}
        if variance:
            buffers[VARIANCE] = self._variance().scratch()
        return buffers

    def _variance(self):
        if self.variance is None:
            raise ValueError(f"{self.path}: no variance planes in this store (only Rubin stores have them, "
                             "unless built with --no-variance)")
        return self.variance

    def psf(self, row: int) -> tuple:
        """Alert `row`'s three PSF images (science, template, difference) at their own size,
        float32 (height, width) each, None for a cutout without one; a ValueError for a store
        built without `--psf` or whose `psf/index` is damaged (see `_psf.py`)."""
        from ._psf import Psf

        return Psf(self).images(int(row))

    def labels_of(self, index: int, local: np.ndarray | None) -> np.ndarray:
        """The label codes of the selected rows of chunk `index` (the catalog chunk only)."""
        start, stop = self.chunk_span(index)
        codes = self.catalog.chunk(index)[: stop - start]["label_code"]
        return codes if local is None else codes[local]

    def read(self, index: int, local: np.ndarray | None, fields: tuple, scratch: dict | None = None,
             variance: bool = False) -> Chunk:
        """Chunk `index`, read once: the rows at positions `local` within it (None: every row),
        with their variance planes if `variance`. With `scratch` (from `scratch()`), the stamps
        may be a view of it: copy them out before the scratch is used again."""
        start, stop = self.chunk_span(index)
        count = stop - start
        stamps, catalog, planes = self._all(index, scratch or {}, variance)
        stamps, catalog = stamps[:count], catalog[:count]
        planes = planes[:count] if planes is not None else None
        if local is not None:
            stamps, catalog = stamps[local], catalog[local]
            planes = planes[local] if planes is not None else None
            row = start + local.astype(np.int64)
        else:
            row = np.arange(start, stop, dtype=np.int64)
        return Chunk(index, row, stamps, {f: np.ascontiguousarray(catalog[f]) for f in fields}, planes)

    def _all(self, index: int, scratch: dict, variance: bool) -> tuple:
        """Chunk `index` of stamps, of catalog and (if `variance`) of variance, decoded; the
        direct engine fetches the objects together (one round trip to object storage)."""
        arrays = [self.stamps, self.catalog] + ([self._variance()] if variance else [])
        names = [STAMPS, CATALOG, VARIANCE][: len(arrays)]
        if self.engine != "direct":
            decoded = [array.chunk(index) for array in arrays]
        else:
            raws = self.stamps.files.get_many([array.key(index) for array in arrays])
            decoded = [array.decode(index, raw, scratch.get(name)) for array, raw, name in zip(arrays, raws, names)]
        return decoded[0], decoded[1], decoded[2] if variance else None


def open_store(store, engine: str = "auto", storage_options: dict | None = None) -> Store:
    """`store` itself if it is an open `Store`, else the store it names (a folder or a URL)."""
    return store if isinstance(store, Store) else Store(store, engine=engine, storage_options=storage_options)
