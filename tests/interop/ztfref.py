"""Reference decoding of ZTF alerts with fastavro + astropy, written from the store specification.

Everything the interop tests compare the Rust-built store against comes from here: which inputs
are bad, the stamp rule (centre crop, edge placement, NaN and masked-pixel policy, flags), the catalog row
(column list from schemas/catalog.tsv, missing values), and the values of light-curve rows as
stored (the light-curve rules themselves are in test_lightcurves.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import gzip
import io
import json
import math
import warnings
from pathlib import Path

import fastavro
import numpy as np
from astropy.io import fits

FRAME = 63  # full cutout side
CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
CHANNELS = ["science", "template", "difference"]
# A CCD readout channel is 3072 columns x 3080 rows; an edge cutout near the high edge is
# clipped on its high side (placed at offset 0), otherwise on its low side.
X_SPLIT = 1536.0
Y_SPLIT = 1540.0

FLAG_EDGE = 1
FLAG_NAN = 2
FLAG_GUESSED = 4
FLAG_MASKED = 8  # a kept pixel held ZTF's masked value, -3.4028235e38 (any value <= -1e30)
MASKED_AT_OR_BELOW = np.float32(-1e30)

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------
# catalog.tsv


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    missing: str
    source: str
    description: str

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def kind(self) -> str:
        return self.np_dtype.kind  # 'f', 'i', 'u', 'U' ('O' for a variable-length string)

    @property
    def is_string(self) -> bool:
        return self.kind in "UOT"

    def missing_value(self):
        k = self.kind
        if k == "f":
            return float("nan")
        if k in "iu":
            return int(self.missing)
        return ""

    def stored(self, value):
        """`value` as the store holds it, comparable with ==: a number cast to the column's
        dtype (as bytes, so NaN equals NaN), a string as it is."""
        if self.is_string:
            return str(value)
        return self.np_dtype.type(value).tobytes()


@functools.lru_cache(maxsize=None)
def table_columns(tsv: str) -> tuple[Column, ...]:
    """The columns of schemas/<tsv> (catalog.tsv, epochs.tsv, forced.tsv), in order."""
    cols = []
    for line in (REPO / "schemas" / tsv).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, dtype, missing, source, description = line.split("\t")
        cols.append(Column(name, dtype, missing, source, description))
    return tuple(cols)


def table_dtype(columns) -> np.dtype:
    return np.dtype([(c.name, c.dtype) for c in columns])


def catalog_columns() -> tuple[Column, ...]:
    return table_columns("catalog.tsv")


def catalog_dtype() -> np.dtype:
    return table_dtype(catalog_columns())


# ----------------------------------------------------------------------------------------------
# reading alerts


class BadAlert(Exception):
    """An input the store must reject. `kind` is one of 'corrupt', 'jpeg', 'null-cutout'."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def read_with_schema(path: Path) -> tuple[dict, dict]:
    """The writer schema and the first record of one Avro container: the base of a crafted alert."""
    with open(path, "rb") as f:
        reader = fastavro.reader(f)
        return reader.writer_schema, next(reader)


def write_alert(path: Path, schema: dict, record: dict):
    """One record in an Avro container of `schema` at `path` (a crafted alert)."""
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [record])
    path.write_bytes(buf.getvalue())


def read_record(data: bytes) -> dict:
    """The single record of one Avro container; any decode error (even after the record was
    returned, as fastavro does on a bad trailing sync marker) makes the file corrupt."""
    try:
        records = list(fastavro.reader(io.BytesIO(data)))
    except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt container
        raise BadAlert("corrupt", f"{type(exc).__name__}: {exc}") from exc
    if len(records) != 1:
        raise BadAlert("corrupt", f"{len(records)} records")
    return records[0]


def decode_cutout(stamp: bytes) -> np.ndarray:
    """gzip'd FITS → float32 image, numpy (rows = NAXIS2, cols = NAXIS1)."""
    if stamp[:3] == b"\xff\xd8\xff":
        raise BadAlert("jpeg", "JPEG cutout")
    raw = gzip.decompress(stamp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'SIMPLE  =  T' is not in fixed format
        with fits.open(io.BytesIO(raw), memmap=False) as hdul:
            data = hdul[0].data
            assert hdul[0].header["BITPIX"] == -32
            return np.array(data, dtype="<f4")


@dataclasses.dataclass
class Alert:
    record: dict
    cutouts: list  # three float32 images, science/template/difference

    @property
    def candid(self) -> int:
        return int(self.record["candid"])


def parse_alert(data: bytes) -> Alert:
    record = read_record(data)
    cutouts = []
    for name in CUTOUTS:
        c = record.get(name)
        if c is None or c.get("stampData") is None:
            raise BadAlert("null-cutout", f"{name} is null")
        cutouts.append(decode_cutout(c["stampData"]))
    return Alert(record, cutouts)


@functools.lru_cache(maxsize=None)
def alert_from_file(path: str) -> Alert:
    return parse_alert(Path(path).read_bytes())


def classify_file(path: Path) -> str | None:
    """None for a good alert, else the BadAlert kind."""
    try:
        alert_from_file(str(path))
    except BadAlert as exc:
        return exc.kind
    return None


def walk(root: Path) -> list[Path]:
    """.avro files under root in the order a sorted recursive walk gives (component-wise)."""
    return sorted(root.rglob("*.avro"), key=lambda p: p.parts)


# ----------------------------------------------------------------------------------------------
# stamp rule


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def place_in_frame(img: np.ndarray, xpos, ypos, fill: float):
    """Put a (possibly clipped) cutout into the 63x63 frame.

    Returns (frame, is_data mask, edge, guessed). guessed is True when an axis is clipped and
    its position is missing (null or NaN); the image is then placed as for the high edge
    (offset 0), as the store's `stamp_flags` attribute documents."""
    h, w = img.shape
    if h > FRAME or w > FRAME:
        raise AssertionError(f"cutout larger than {FRAME}: {img.shape}")
    guessed = False

    def offset(size, pos, split):
        nonlocal guessed
        if size == FRAME:
            return 0
        if _isnan(pos):
            guessed = True
            return 0
        return 0 if float(pos) > split else FRAME - size

    x0 = offset(w, xpos, X_SPLIT)
    y0 = offset(h, ypos, Y_SPLIT)
    frame = np.full((FRAME, FRAME), fill, dtype="<f4")
    mask = np.zeros((FRAME, FRAME), dtype=bool)
    frame[y0 : y0 + h, x0 : x0 + w] = img
    mask[y0 : y0 + h, x0 : x0 + w] = True
    edge = (h, w) != (FRAME, FRAME)
    return frame, mask, edge, guessed


@dataclasses.dataclass
class ExpectedStamp:
    pixels: np.ndarray  # (3, S, S) float32
    flags: int


def expected_stamp(alert: Alert, size: int, keep_nan: bool, keep_masked: bool = False) -> ExpectedStamp:
    """The stored stamp: NaN pixels and ZTF's masked pixels are missing (0, or NaN with
    keep_nan) unless keep_masked keeps the masked value as it is; flags say which there were."""
    assert size % 2 == 1 and 1 <= size <= FRAME
    o = (FRAME - size) // 2
    cand = alert.record["candidate"]
    fill = float("nan") if keep_nan else 0.0
    out = np.empty((3, size, size), dtype="<f4")
    flags = 0
    for ch, img in enumerate(alert.cutouts):
        frame, mask, edge, guessed = place_in_frame(img, cand.get("xpos"), cand.get("ypos"), fill)
        crop = frame[o : o + size, o : o + size]
        crop_mask = mask[o : o + size, o : o + size]
        if edge:
            flags |= FLAG_EDGE
        if guessed:
            flags |= FLAG_GUESSED
        if np.isnan(crop[crop_mask]).any():
            flags |= FLAG_NAN
        masked = crop_mask & (crop <= MASKED_AT_OR_BELOW)
        if masked.any():
            flags |= FLAG_MASKED
        if not keep_masked:
            crop = np.where(masked, np.float32(fill), crop)
        if not keep_nan:
            crop = np.where(np.isnan(crop), np.float32(0), crop)
        out[ch] = crop
    return ExpectedStamp(out, flags)


# ----------------------------------------------------------------------------------------------
# catalog rule


# Derived columns that hold their missing value unless a build is given class labels.
UNLABELED_COLUMNS = ("label", "label_code")


def _lookup(record: dict, source: str):
    if source.startswith("alert."):
        return record.get(source[len("alert.") :])
    if source.startswith("candidate."):
        cand = record.get("candidate") or {}
        return cand.get(source[len("candidate.") :])
    raise KeyError(source)


def _array_len(record: dict, key: str):
    v = record.get(key)
    return None if v is None else len(v)


def expected_row(alert: Alert, source: str, flags: int) -> dict:
    """Column name → expected value (missing values already applied)."""
    row = {}
    rec = alert.record
    for col in catalog_columns():
        if col.name == "source":
            v = source[-128:]
        elif col.name == "stamp_flags":
            v = flags
        elif col.name == "n_prv_candidates":
            v = _array_len(rec, "prv_candidates")
        elif col.name == "n_fp_hists":
            v = _array_len(rec, "fp_hists")
        elif col.name in UNLABELED_COLUMNS:
            v = None  # no labels CSV is given to the builds under test
        elif col.source == "derived":
            raise KeyError(f"no reference rule for derived column {col.name!r}")
        else:
            v = _lookup(rec, col.source)
        if v is None:
            v = col.missing_value()
        row[col.name] = v
    return row


def expected_catalog(rows: list[dict]) -> np.ndarray:
    """Rows (dicts from expected_row) as an array of the catalog dtype."""
    return expected_table(catalog_columns(), rows)


def expected_table(columns, rows: list[dict]) -> np.ndarray:
    """Rows (column name -> value, missing values applied) as an array of the columns' dtype;
    a string longer than its column is an error (the reference never cuts one)."""
    arr = np.zeros(len(rows), dtype=table_dtype(columns))
    for col in columns:
        values = [r[col.name] for r in rows]
        if col.kind == "U":
            width = col.np_dtype.itemsize // 4
            for v in values:
                assert len(v) <= width, f"{col.name}: {v!r} longer than {width}"
        arr[col.name] = np.array(values, dtype=object).astype(col.np_dtype) if values else []
    return arr


def records(columns: dict) -> np.ndarray:
    """Columns (name -> 1-D values, one length) as a structured array; strings of any storage
    (object, numpy StringDType, fixed width) become `<U{longest}` (at least 1)."""
    fixed = {}
    for name, values in columns.items():
        values = np.asarray(values)
        if values.dtype.kind in "OTU":
            strings = [str(v) for v in values.tolist()]
            values = np.array(strings, dtype=f"<U{max([1, *map(len, strings)])}")
        fixed[name] = values
    length = len(next(iter(fixed.values()))) if fixed else 0
    out = np.empty(length, dtype=[(name, values.dtype) for name, values in fixed.items()])
    for name, values in fixed.items():
        out[name] = values
    return out


def expected_columns(columns, rows: list[dict]) -> np.ndarray:
    """Rows (column name -> value, missing values applied) of a table stored as columns, as a
    structured array of `records`: numbers in the columns' dtypes, strings whole (they are
    stored with variable length, never cut)."""
    out = {}
    for col in columns:
        values = [r[col.name] for r in rows]
        out[col.name] = np.array([str(v) for v in values], dtype=object) if col.is_string else np.array(values, dtype=col.np_dtype)
    return records(out)


def field_mismatches(actual: np.ndarray, expected: np.ndarray, name: str) -> np.ndarray:
    """Row indices where one field differs (NaN equals NaN)."""
    a = actual[name]
    e = expected[name]
    if a.dtype.kind == "f":
        same = (a == e) | (np.isnan(a) & np.isnan(e))
    else:
        same = a == e
    return np.nonzero(~same)[0]


# ----------------------------------------------------------------------------------------------
# raw store files (what the binary wrote, independent of zarr-python)


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def rejects_logs(store: Path) -> list[Path]:
    """The store's rejects logs, oldest first: rejects/NNNNNN.jsonl, one per build that rejected something."""
    return sorted((Path(store) / "rejects").glob("*.jsonl"))


def read_rejects(store: Path) -> list[dict]:
    lines = []
    for p in rejects_logs(store):
        lines += [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


# ----------------------------------------------------------------------------------------------
# Rubin (LSST) alerts: reference decoding with fastavro (the published lsst/alert_packet schemas
# of the data folder) and astropy, written from the store specification and the data folder's
# MANIFEST.md. The LSST tests (test_lsst.py) compare the Rust-built store against these.

_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
LSST_CHANNELS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
LSST_FLAG_PADDED = 1
LSST_FLAG_NAN = 2
LSST_FLAG_GUESSED = 4
LSST_FLAG_NO_CUTOUT = 8
LSST_FLAG_NO_VARIANCE = 16
# Top-level alert fields the catalog does not hold as alert-level columns: the records it flattens
# (diaSource, diaObject_*, ssSource_*), the histories (light curves), orbits and the cutouts (stamps).
LSST_NOT_ALERT_COLUMNS = {"diaSource", "diaObject", "ssSource", "ssObject", "prvDiaSources", "prvDiaForcedSources",
                          "prvDiaNondetectionLimits", "MPCORB", "mpc_orbits", *LSST_CHANNELS}


@dataclasses.dataclass
class LsstAlert:
    path: Path
    version: str  # "10.0"
    record: dict  # fastavro's decoding
    framed: bool  # a Confluent-framed single message (False: from a container)


@functools.lru_cache(maxsize=None)
def lsst_schema(data_root: str, version: str):
    """The published alert schema `version` ("10.0") of the data folder, with its named types."""
    from fastavro.schema import load_schema

    major, minor = version.split(".")
    return load_schema(str(Path(data_root) / "schema" / version / f"lsst.v{major}_{minor}.alert.avsc"))


def lsst_read(path: Path, data_root: Path) -> list:
    """Every alert of one file as `LsstAlert`s: a Confluent-framed message (byte 0, schema id
    major*100+minor as big-endian int32, one schemaless datum that ends the file) decoded with
    the published schema of that id, or an Avro container decoded with its own schema."""
    import struct

    data = Path(path).read_bytes()
    if data[:4] == b"Obj\x01":
        with open(path, "rb") as f:
            reader = fastavro.reader(f)
            name = reader.writer_schema["name"]  # e.g. lsst.v10_0.alert
            version = name.split(".")[1][1:].replace("_", ".")
            return [LsstAlert(Path(path), version, record, False) for record in reader]
    assert data[0] == 0, f"{path}: neither a container nor a Confluent message"
    major, minor = divmod(struct.unpack(">i", data[1:5])[0], 100)
    version = f"{major}.{minor}"
    stream = io.BytesIO(data[5:])
    record = fastavro.schemaless_reader(stream, lsst_schema(str(data_root), version))
    assert stream.tell() == len(data) - 5, f"{path}: bytes left after the datum"
    return [LsstAlert(Path(path), version, record, True)]


def lsst_catalog_columns() -> list:
    """The Rubin catalog's columns (schemas/lsst/catalog.tsv), in store order."""
    return _tsv_columns(REPO / "schemas" / "lsst" / "catalog.tsv")


def lsst_table_columns(table: str) -> list:
    """The columns of a Rubin light-curve table (schemas/lsst/<table>.tsv)."""
    return _tsv_columns(REPO / "schemas" / "lsst" / f"{table}.tsv")


def _tsv_columns(path: Path) -> list:
    columns = []
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, dtype, missing, source, description = line.split("\t")
        columns.append(Column(name, dtype, missing, source, description))
    return columns


def lsst_value(column: Column, value):
    """`value` (fastavro's, None for null or for a field the packet's schema lacks) as the store
    holds it in `column`: null → the column's missing value, a boolean 1/0 (missing 255), a
    number cast to the column's dtype, a string as it is."""
    if value is None:
        if column.is_string:
            return ""
        if column.kind == "f":
            return column.np_dtype.type("nan")
        return column.np_dtype.type(int(column.missing))
    if column.is_string:
        return str(value)
    if isinstance(value, datetime.datetime):  # a timestamp-micros field, as fastavro gives it
        return column.np_dtype.type((value - _UNIX_EPOCH) // datetime.timedelta(microseconds=1))
    if isinstance(value, bool):
        assert column.dtype == "|u1", f"{column.name}: a boolean in a {column.dtype} column"
        return np.uint8(1 if value else 0)
    if column.kind in "iu":
        assert isinstance(value, int), f"{column.name}: {value!r} in an integer column"
        return column.np_dtype.type(value)
    return column.np_dtype.type(value)


def lsst_field(column: Column, alert: dict):
    """The packet's value for a catalog column whose `source` is `record.field` (None: null, or
    a field this packet's schema does not have)."""
    record, field = column.source.split(".", 1)
    if record == "alert":
        return alert.get(field)
    inner = alert.get(record)
    return None if inner is None else inner.get(field)


def same_value(stored, expected) -> bool:
    """Equal as the store holds them: numbers bit for bit in the stored dtype (any NaN equals
    any NaN), strings exactly."""
    if isinstance(expected, str):
        return str(stored) == expected
    stored = np.asarray(stored)
    expected = np.asarray(expected, dtype=stored.dtype)
    if stored.dtype.kind == "f" and np.isnan(stored) and np.isnan(expected):
        return True
    return stored.tobytes() == expected.tobytes()


def lsst_window_start(c: float, size: int) -> int:
    """Where the `size`-wide window around position `c` starts: floor(c − (S−1)/2 + 0.5)."""
    return math.floor(c - (size - 1) / 2 + 0.5)


def lsst_cut(cutout: bytes | None, x, y, size: int, fill=np.float32(0.0)) -> tuple:
    """(stamp, variance, flags) of one Rubin cutout, by the rule: the source at 0-based pixel
    (x − CUTMINX − 1, y − CUTMINY − 1) of the PRIMARY image, else CRPIX − 1, else the middle
    (flag 4); an S-wide window from floor(c − (S−1)/2 + 0.5) on each axis, pixels outside the
    cutout the fill (flag 1), NaN pixels the fill (flag 2); the UNCERT HDU on the same window
    (none: fill, flag 16); a null cutout all fill (flag 8). Read with astropy."""
    blank = np.full((size, size), fill, np.float32)
    if cutout is None:
        return blank, blank.copy(), LSST_FLAG_NO_CUTOUT
    with fits.open(io.BytesIO(cutout)) as hdul:
        header = hdul[0].header
        image = np.asarray(hdul[0].data, dtype=np.float32)
        names = [hdu.name for hdu in hdul]
        variance = np.asarray(hdul["UNCERT"].data, dtype=np.float32) if "UNCERT" in names else None
    height, width = image.shape
    flags = 0

    def inside(c, r):
        return math.isfinite(c) and math.isfinite(r) and -0.5 <= c < width - 0.5 and -0.5 <= r < height - 0.5

    x = float("nan") if x is None else float(x)
    y = float("nan") if y is None else float(y)
    candidates = []
    if "CUTMINX" in header and "CUTMINY" in header:
        candidates.append(((x - int(header["CUTMINX"]) - 1, y - int(header["CUTMINY"]) - 1), False))
    if "CRPIX1" in header and "CRPIX2" in header:
        candidates.append(((float(header["CRPIX1"]) - 1, float(header["CRPIX2"]) - 1), True))
    centre, guessed = next((c for c in candidates if inside(*c[0])), (((width - 1) / 2, (height - 1) / 2), True))
    if guessed:
        flags |= LSST_FLAG_GUESSED
    col0, row0 = lsst_window_start(centre[0], size), lsst_window_start(centre[1], size)

    def crop(plane):
        nonlocal flags
        out = np.full((size, size), fill, np.float32)
        rows = np.arange(row0, row0 + size)
        cols = np.arange(col0, col0 + size)
        rin = (rows >= 0) & (rows < height)
        cin = (cols >= 0) & (cols < width)
        if not (rin.all() and cin.all()):
            flags |= LSST_FLAG_PADDED
        window = plane[np.ix_(rows[rin], cols[cin])]
        if np.isnan(window).any():
            flags |= LSST_FLAG_NAN
            window = np.where(np.isnan(window), fill, window)
        out[np.ix_(np.nonzero(rin)[0], np.nonzero(cin)[0])] = window
        return out

    stamp = crop(image)
    if variance is None:
        flags |= LSST_FLAG_NO_VARIANCE
        return stamp, blank.copy(), flags
    return stamp, crop(variance), flags


def lsst_stamps(alert: dict, size: int) -> tuple:
    """(stamps (3, S, S), variance (3, S, S), stamp_flags) of one alert by `lsst_cut`."""
    source = alert["diaSource"]
    planes = [lsst_cut(alert.get(ch), source.get("x"), source.get("y"), size) for ch in LSST_CHANNELS]
    flags = 0
    for _, _, f in planes:
        flags |= f
    return np.stack([p[0] for p in planes]), np.stack([p[1] for p in planes]), flags
