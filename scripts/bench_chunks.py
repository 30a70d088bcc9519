#!/usr/bin/env python3
"""Chunk size and zstd level trade-off: build time, store size, and dask / random-batch read time.

Usage: scripts/bench_chunks.py ALERT_FOLDER [--rows 250,1000,4000] [--levels 1,3] [--python PY]

For each (chunk rows, level): `ztf2zarr build` into a fresh store (timed), the size of its chunk
files, the time dask takes to sum every stamp (a full out-of-core pass), and the time to read 200
random batches of 64 sorted rows with zarr-python (a training loop's access pattern). The read
timings run in PY (default: the repository's .venv) so they use zarr-python 3.
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

REPO = Path(__file__).resolve().parent.parent

READER = r"""
import json, sys, time
import dask.array as da, numpy as np, zarr
path = sys.argv[1]
t = time.perf_counter(); total = float(da.from_zarr(path, component="stamps").sum(dtype="f8").compute()); full = time.perf_counter() - t
stamps = zarr.open(path, mode="r")["stamps"]; n = stamps.shape[0]; rng = np.random.default_rng(0)
t = time.perf_counter()
for _ in range(200):
    stamps.get_orthogonal_selection((np.sort(rng.choice(n, 64, replace=False)),))
batches = time.perf_counter() - t
print(json.dumps({"dask_sum_s": full, "batches_s": batches}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", default="250,1000,4000")
    parser.add_argument("--levels", default="1,3")
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    binary = REPO / "target" / "release" / "ztf2zarr"
    print(f"{'rows':>6} {'level':>5} {'build s':>8} {'store MB':>9} {'dask sum s':>10} {'200×64 rows s':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in [int(r) for r in args.rows.split(",")]:
            for level in [int(l) for l in args.levels.split(",")]:
                store = Path(tmp) / f"r{rows}-l{level}.zarr"
                start = time.perf_counter()
                subprocess.run([str(binary), "build", str(args.folder), "-o", str(store), "--no-progress",
                                "--chunk-rows", str(rows), "--zstd-level", str(level)], check=True, stdout=subprocess.DEVNULL)
                build = time.perf_counter() - start
                size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file() and not p.name.startswith("."))
                reads = json.loads(subprocess.run([args.python, "-c", READER, str(store)], check=True,
                                                  capture_output=True, text=True).stdout)
                print(f"{rows:>6} {level:>5} {build:>8.2f} {size / 1e6:>9.1f} {reads['dask_sum_s']:>10.2f} {reads['batches_s']:>14.2f}")
                shutil.rmtree(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
