#!/usr/bin/env python3
"""Chunk size and stamp codec trade-offs: build time, file count, size, epoch reads, batch mixing.

Usage (with the package installed, e.g. the repository's .venv after scripts/test):
    .venv/bin/python scripts/bench_chunks.py ALERT_FOLDER [--rows 250,500,1000,2000,4000]
                                             [--buffer-mb 32] [--codecs]

For each chunk size: `ztf2zarr build` into a fresh store (timed), its chunk-file count and size,
one shuffled epoch through `ztf2zarr.batches` (samples/s), a dask pass over every stamp, and
how well batches mix: the chunks the shuffle buffer holds at --buffer-mb, and the mean number
of distinct chunks among a batch's 256 rows.

With --codecs, the stamps of the store built at the first --rows value are re-encoded with
numcodecs for each candidate codec (zstd alone, byte shuffle + zstd, blosc with byte shuffle or
bitshuffle) and each is timed: compressed size, encode MB/s, decode MB/s (one core).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def build(binary: Path, folder: Path, store: Path, rows: int) -> float:
    start = time.perf_counter()
    subprocess.run([str(binary), "build", str(folder), "-o", str(store), "--no-progress", "--chunk-rows", str(rows)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def chunk_files(store: Path) -> list:
    return [p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".") and p.parent != store]


def epoch(store: Path, buffer_mb: float) -> tuple:
    import ztf2zarr

    start = time.perf_counter()
    n, distinct, chunk_rows = 0, [], ztf2zarr.Store(store).chunk_rows
    for batch in ztf2zarr.batches(store, batch_size=256, buffer_mb=buffer_mb):
        n += len(batch["row"])
        if len(batch["row"]) == 256:
            distinct.append(len(np.unique(batch["row"] // chunk_rows)))
    seconds = time.perf_counter() - start
    row_bytes = 3 * 21 * 21 * 4 + 8 + 2
    held = max(int(buffer_mb * 1e6) // row_bytes, chunk_rows) / chunk_rows
    return n / seconds, held, float(np.mean(distinct)) if distinct else 0.0


def dask_pass(store: Path) -> float:
    import dask.array as da

    start = time.perf_counter()
    da.from_zarr(str(store), component="stamps").sum(dtype="f8").compute()
    return time.perf_counter() - start


def codecs(store: Path) -> None:
    import numcodecs

    candidates = {
        "zstd 1 (no filter)": ([], numcodecs.Zstd(1)),
        "shuffle(4) + zstd 1": ([numcodecs.Shuffle(4)], numcodecs.Zstd(1)),
        "blosc zstd 1, byte shuffle": ([], numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE)),
        "blosc zstd 1, bitshuffle": ([], numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE)),
    }
    numcodecs.blosc.set_nthreads(1)
    reader = __import__("ztf2zarr")._store.Store(store)
    # float32 arrays, so that blosc shuffles 4-byte elements (its typesize is the item size)
    raw = [np.array(reader.stamps.chunk(c)) for c in range(reader.n_chunks)]
    total = sum(r.nbytes for r in raw)
    print(f"\n{'stamps codec':<28} {'ratio':>6} {'MB':>7} {'encode MB/s':>12} {'decode MB/s':>12}")
    for name, (filters, compressor) in candidates.items():
        start = time.perf_counter()
        encoded = []
        for r in raw:
            data = r
            for f in filters:
                data = f.encode(data)
            encoded.append(compressor.encode(data))
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        for e in encoded:
            data = compressor.decode(e)
            for f in reversed(filters):
                data = f.decode(data)
        decode_s = time.perf_counter() - start
        size = sum(len(e) for e in encoded)
        print(f"{name:<28} {total / size:>6.3f} {size / 1e6:>7.1f} {total / 1e6 / encode_s:>12.0f} {total / 1e6 / decode_s:>12.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", default="250,500,1000,2000,4000")
    parser.add_argument("--buffer-mb", type=float, default=32.0)
    parser.add_argument("--codecs", action="store_true")
    parser.add_argument("--binary", type=Path, default=REPO / "target" / "release" / "ztf2zarr")
    args = parser.parse_args()
    print(f"{'rows':>6} {'build s':>8} {'files':>6} {'store MB':>9} {'epoch samples/s':>16} {'dask sum s':>10} "
          f"{'chunks in buffer':>17} {'chunks per batch':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        sizes = [int(r) for r in args.rows.split(",")]
        for rows in sizes:
            store = Path(tmp) / f"r{rows}.zarr"
            seconds = build(args.binary, args.folder, store, rows)
            files = chunk_files(store)
            size = sum(p.stat().st_size for p in files)
            epoch(store, args.buffer_mb)  # warm the page cache
            rate, held, distinct = epoch(store, args.buffer_mb)
            print(f"{rows:>6} {seconds:>8.2f} {len(files):>6} {size / 1e6:>9.1f} {rate:>16,.0f} {dask_pass(store):>10.2f} "
                  f"{held:>17.1f} {distinct:>17.1f}", flush=True)
            if args.codecs and rows == sizes[0]:
                codecs(store)
                print()
            shutil.rmtree(store)
    print(json.dumps({"buffer_mb": args.buffer_mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
