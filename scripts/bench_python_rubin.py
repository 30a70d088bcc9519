#!/usr/bin/env python3
"""A plain Python reading of Rubin alerts into a training store: the Rubin baseline of
scripts/bench_rubin.

    bench_python_rubin.py FOLDER OUT.zarr [--schemas DIR] [--side S] [--limit K] [--json RESULT.json]

What a user writes today with the libraries Rubin's own tools use, in one process: for every alert
file under FOLDER (sorted; the first K with --limit), a Confluent message (byte 0, the schema id,
one schemaless datum), decode it with fastavro's schemaless_reader and the schema of its id
(DIR/<major>.<minor>.avsc, default the repository's schemas/lsst/); for each of the three cutouts
open the FITS bytes with astropy.io.fits and cut the S x S window of the PRIMARY image and of the
UNCERT image centred on the diaSource (0-based pixel x - CUTMINX - 1, y - CUTMINY - 1, as
docs/rubin.md says), padding with 0 and setting NaN to 0; collect every diaSource field into a row
of a numpy structured array built from the first alert's schema (null -> NaN for floats, -1 for
integers, '' for strings). Every 1000 alerts the rows are written with zarr-python (3.x, Zarr v2
format, zstd level 1, 1000 rows per chunk, like ztf2zarr's defaults) into OUT.zarr: `stamps` and
`variance` (N, 3, S, S) float32 and `catalog` (N,) structured; the metadata is consolidated at
the end. No light curves (ztf2zarr's build writes them too).

Prints one summary line; --json writes {"alerts", "seconds", "import_seconds", "alerts_per_s"},
where "seconds" runs from after the imports to the end of the write.

Requires numpy, fastavro, astropy, zarr>=3.
"""

import argparse
import io
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
CHUNK_ROWS = 1000
STRING_WIDTH = 64
REPO = Path(__file__).resolve().parent.parent

AVRO_TYPES = {
    "int": ("<i4", -1),
    "long": ("<i8", -1),
    "float": ("<f4", float("nan")),
    "double": ("<f8", float("nan")),
    "boolean": ("u1", 255),
    "string": (f"<U{STRING_WIDTH}", ""),
}


def alert_files(folder, limit):
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".avro"))
    if not files:
        sys.exit(f"bench_python_rubin: no .avro files under {folder}")
    return files[:limit] if limit else files


def source_columns(schema):
    """[(name, numpy dtype, missing value)] of the diaSource record of a parsed alert schema."""
    for field in schema["fields"]:
        if field["name"] == "diaSource":
            record = field["type"]
            break
    else:
        sys.exit("bench_python_rubin: the schema has no diaSource record")
    columns = []
    for field in record["fields"]:
        ftype = field["type"]
        if isinstance(ftype, list):
            ftype = next((t for t in ftype if t != "null"), "null")
        if isinstance(ftype, dict):
            ftype = ftype.get("type")
        dtype, missing = AVRO_TYPES.get(ftype, AVRO_TYPES["string"])
        columns.append((field["name"], dtype, missing))
    return columns


def window(image, cx, cy, side, np):
    """The side x side window of `image` centred on (cx, cy), 0 outside it and for NaN."""
    out = np.zeros((side, side), dtype=np.float32)
    x0 = math.floor(cx - (side - 1) / 2 + 0.5)
    y0 = math.floor(cy - (side - 1) / 2 + 0.5)
    height, width = image.shape
    xs, xe = max(x0, 0), min(x0 + side, width)
    ys, ye = max(y0, 0), min(y0 + side, height)
    if xs < xe and ys < ye:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = image[ys:ye, xs:xe]
    out[np.isnan(out)] = 0
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="folder of Confluent-framed .avro alert files (searched recursively)")
    parser.add_argument("out", help="the Zarr store to write (replaced if it exists)")
    parser.add_argument("--schemas", default=str(REPO / "schemas" / "lsst"), help="folder of <major>.<minor>.avsc")
    parser.add_argument("--side", type=int, default=30, help="stamp side (default 30)")
    parser.add_argument("--limit", type=int, default=0, help="only the first K files (sorted)")
    parser.add_argument("--json", help="write the timing as JSON to this file")
    args = parser.parse_args()

    import_started = time.perf_counter()
    import fastavro
    import numcodecs
    import numpy as np
    import zarr
    from astropy.io import fits

    if int(zarr.__version__.split(".")[0]) < 3:
        sys.exit(f"bench_python_rubin: needs zarr-python 3.x, found {zarr.__version__}")
    started = time.perf_counter()
    import_seconds = started - import_started

    files = alert_files(args.folder, args.limit)
    side = args.side
    schemas = {}

    def schema_of(schema_id):
        if schema_id not in schemas:
            major, minor = divmod(schema_id, 100)
            with open(Path(args.schemas) / f"{major}.{minor}.avsc") as handle:
                schemas[schema_id] = fastavro.parse_schema(json.load(handle))
        return schemas[schema_id]

    root = zarr.open_group(args.out, mode="w", zarr_format=2)
    compressor = numcodecs.Zstd(level=1)
    capacity = len(files)
    arrays = {}
    columns = dtype = None
    planes = {name: np.zeros((CHUNK_ROWS, 3, side, side), dtype=np.float32) for name in ("stamps", "variance")}
    rows = []
    written = 0

    def flush():
        nonlocal written
        count = len(rows)
        if count == 0:
            return
        for name in ("stamps", "variance"):
            arrays[name][written : written + count] = planes[name][:count]
        arrays["catalog"][written : written + count] = np.array(rows, dtype=dtype)
        written += count
        rows.clear()

    for path in files:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            if data[:1] != b"\x00":
                raise ValueError("not a Confluent-framed message")
            schema = schema_of(struct.unpack(">i", data[1:5])[0])
            alert = fastavro.schemaless_reader(io.BytesIO(data[5:]), schema)
            source = alert["diaSource"]
            if columns is None:
                columns = source_columns(schema)
                dtype = np.dtype([(name, dt) for name, dt, _ in columns])
                for name in ("stamps", "variance"):
                    arrays[name] = root.create_array(
                        name, shape=(capacity, 3, side, side), chunks=(CHUNK_ROWS, 3, side, side), dtype="<f4",
                        compressors=compressor, fill_value=0.0,
                    )
                arrays["catalog"] = root.create_array(
                    "catalog", shape=(capacity,), chunks=(CHUNK_ROWS,), dtype=dtype, compressors=compressor
                )
            slot = len(rows)
            for channel, key in enumerate(CUTOUTS):
                if alert[key] is None:
                    planes["stamps"][slot, channel] = 0
                    planes["variance"][slot, channel] = 0
                    continue
                with fits.open(io.BytesIO(alert[key])) as hdul:
                    header = hdul[0].header
                    cx = source["x"] - header["CUTMINX"] - 1
                    cy = source["y"] - header["CUTMINY"] - 1
                    planes["stamps"][slot, channel] = window(hdul[0].data.astype(np.float32), cx, cy, side, np)
                    planes["variance"][slot, channel] = window(hdul["UNCERT"].data.astype(np.float32), cx, cy, side, np)
            row = []
            for name, _, missing in columns:
                value = source.get(name)
                row.append(missing if value is None else value)
            rows.append(tuple(row))
            if len(rows) == CHUNK_ROWS:
                flush()
        except Exception as error:  # say which file, then stop as the user's script would
            sys.exit(f"bench_python_rubin: {path}: {type(error).__name__}: {error}")
    flush()
    zarr.consolidate_metadata(args.out)
    seconds = time.perf_counter() - started
    rate = written / seconds if seconds > 0 else 0.0
    print(
        f"bench_python_rubin: {written} alerts in {seconds:.2f} s ({rate:.1f} alerts/s; imports "
        f"{import_seconds:.2f} s not counted) -> {args.out}"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"alerts": written, "seconds": seconds, "import_seconds": import_seconds, "alerts_per_s": rate}, out)
            out.write("\n")


if __name__ == "__main__":
    main()
