#!/usr/bin/env python3
"""The Python pipeline that ztf2zarr replaces: the baseline of scripts/bench.

    bench_python_pipeline.py FOLDER OUT.zarr [--limit K] [--json RESULT.json]

What users run today, in one process: for every alert file under FOLDER (sorted; the first K with
--limit), read it with fastavro; for each of the three cutouts gzip.decompress the stampData, open
the FITS file with astropy.io.fits, convert to float32, crop the centre [21:42, 21:42], set NaN to
0; collect the candidate fields into a row of a numpy structured array whose dtype is built from
the first alert's candidate schema (null -> NaN for floats, -1 for integers, '' for strings).
Every 1000 alerts the rows are written with zarr-python (3.x, Zarr v2 format, zstd level 1, 1000
rows per chunk, like ztf2zarr's defaults) into OUT.zarr: `stamps` (N, 3, 21, 21) float32 and
`catalog` (N,) structured; the metadata is consolidated at the end.

Prints one summary line; --json writes {"alerts", "seconds", "import_seconds", "alerts_per_s"},
where "seconds" runs from after the imports to the end of the write (so start-up is left out of
the rate, which favours Python on small runs).

Requires numpy, fastavro, astropy, zarr>=3 (numcodecs comes with zarr).
"""

import argparse
import gzip
import io
import json
import os
import sys
import time

CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
CROP = slice(21, 42)
SIDE = 21
CHUNK_ROWS = 1000
STRING_WIDTH = 64

# Avro type -> (numpy dtype, value stored for null)
AVRO_TYPES = {
    "int": ("<i4", -1),
    "long": ("<i8", -1),
    "float": ("<f4", float("nan")),
    "double": ("<f8", float("nan")),
    "boolean": ("?", False),
    "string": (f"<U{STRING_WIDTH}", ""),
}


def alert_files(folder, limit):
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".avro"))
    if not files:
        sys.exit(f"bench_python_pipeline: no .avro files under {folder}")
    return files[:limit] if limit else files


def candidate_columns(writer_schema, first_candidate):
    """[(name, numpy dtype, missing value)] from the first alert's candidate schema."""
    fields = None
    for field in writer_schema["fields"]:
        if field["name"] == "candidate":
            ftype = field["type"]
            if isinstance(ftype, list):
                ftype = next(t for t in ftype if t != "null")
            fields = ftype["fields"]
    if fields is None:
        sys.exit("bench_python_pipeline: the first alert has no candidate record")
    columns = []
    for field in fields:
        ftype = field["type"]
        if isinstance(ftype, list):
            ftype = next((t for t in ftype if t != "null"), "null")
        if isinstance(ftype, dict):
            ftype = ftype.get("type")
        if ftype not in AVRO_TYPES:
            # Fall back on the first alert's value.
            value = first_candidate.get(field["name"])
            ftype = {float: "double", int: "long", str: "string", bool: "boolean"}.get(type(value), "string")
        dtype, missing = AVRO_TYPES[ftype]
        columns.append((field["name"], dtype, missing))
    return columns


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="folder of .avro alert files (searched recursively)")
    parser.add_argument("out", help="the Zarr store to write (replaced if it exists)")
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
        sys.exit(f"bench_python_pipeline: needs zarr-python 3.x, found {zarr.__version__}")
    started = time.perf_counter()
    import_seconds = started - import_started

    files = alert_files(args.folder, args.limit)
    capacity = len(files)  # one alert per file, as ZTF publishes them (grown if not)

    root = zarr.open_group(args.out, mode="w", zarr_format=2)
    compressor = numcodecs.Zstd(level=1)
    stamps_out = None
    catalog_out = None
    columns = None
    dtype = None

    stamps = np.zeros((CHUNK_ROWS, 3, SIDE, SIDE), dtype=np.float32)
    rows = []
    written = 0

    def flush():
        nonlocal written, capacity
        count = len(rows)
        if count == 0:
            return
        if written + count > capacity:
            capacity = written + count
            stamps_out.resize((capacity, 3, SIDE, SIDE))
            catalog_out.resize((capacity,))
        stamps_out[written : written + count] = stamps[:count]
        catalog_out[written : written + count] = np.array(rows, dtype=dtype)
        written += count
        rows.clear()

    for path in files:
        try:
            with open(path, "rb") as handle:
                reader = fastavro.reader(handle)
                for alert in reader:
                    candidate = alert["candidate"]
                    if columns is None:
                        columns = candidate_columns(reader.writer_schema, candidate)
                        dtype = np.dtype([("objectId", "<U12")] + [(name, dt) for name, dt, _ in columns])
                        stamps_out = root.create_array(
                            "stamps",
                            shape=(capacity, 3, SIDE, SIDE),
                            chunks=(CHUNK_ROWS, 3, SIDE, SIDE),
                            dtype="<f4",
                            compressors=compressor,
                            fill_value=0.0,
                        )
                        catalog_out = root.create_array(
                            "catalog", shape=(capacity,), chunks=(CHUNK_ROWS,), dtype=dtype, compressors=compressor
                        )
                    slot = stamps[len(rows)]
                    for channel, key in enumerate(CUTOUTS):
                        data = gzip.decompress(alert[key]["stampData"])
                        with fits.open(io.BytesIO(data)) as hdul:
                            image = hdul[0].data.astype(np.float32)
                        crop = image[CROP, CROP]
                        crop = np.where(np.isnan(crop), np.float32(0), crop)
                        slot[channel] = 0
                        slot[channel, : crop.shape[0], : crop.shape[1]] = crop
                    row = [alert["objectId"]]
                    for name, _, missing in columns:
                        value = candidate.get(name)
                        row.append(missing if value is None else value)
                    rows.append(tuple(row))
                    if len(rows) == CHUNK_ROWS:
                        flush()
        except Exception as error:  # say which file, then stop as the users' script would
            sys.exit(f"bench_python_pipeline: {path}: {type(error).__name__}: {error}")
    if columns is None:
        sys.exit("bench_python_pipeline: no alerts read")
    flush()
    if written < capacity:
        stamps_out.resize((written, 3, SIDE, SIDE))
        catalog_out.resize((written,))
    zarr.consolidate_metadata(args.out)
    seconds = time.perf_counter() - started

    rate = written / seconds if seconds > 0 else 0.0
    print(
        f"bench_python_pipeline: {written} alerts from {len(files)} files in {seconds:.2f} s "
        f"({rate:.1f} alerts/s; imports {import_seconds:.2f} s not counted) -> {args.out}"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"alerts": written, "files": len(files), "seconds": seconds, "import_seconds": import_seconds, "alerts_per_s": rate}, out)
            out.write("\n")


if __name__ == "__main__":
    main()
