#!/usr/bin/env python3
"""Training-read benchmark: a shuffled epoch through `ztf2zarr.batches` against one `.npy` file
per alert read in shuffled order, and against a sequential scan of the stamps.

Usage (with the package installed, e.g. the repository's .venv after scripts/test):
    .venv/bin/python scripts/bench_reader.py [--count 20000] [--workdir DIR] [--batch-size 256]
                                             [--buffer-mb 256] [--small-buffer-mb 32]
                                             [--chunk-rows N] [--repeat 3]

Steps: `ztf2zarr generate` makes COUNT synthetic alerts and the release binary builds a store
from them (both cached in WORKDIR, keyed by COUNT and chunk rows); the benchmark writes the
stamps once more as one (3, 21, 21) `.npy` per alert. Every measurement runs in its own process,
on a warm page cache (one untimed pass first), and gives samples/s (best of --repeat):
  reader, 1 worker     one epoch of ztf2zarr.batches (shuffled chunks, shuffle buffer)
  reader, 2 workers    two processes, worker 0 and 1 of 2, at once: rows / wall time
  reader, small buffer one worker with --small-buffer-mb (default 32)
  .npy per alert       np.load of every file in shuffled order, stacked into batches
  sequential scan      zarr-python reading `stamps` chunk by chunk, in order
and the peak RSS of the reader process above what it held before reading its first chunk, once
with the default buffer and once with --small-buffer-mb (memory follows the buffer, not the store).
Exit status 0 when every step ran (whether or not a target was met).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_VS_NPY = 3.0
TARGET_VS_SCAN = 0.70

# Each measurement: a small program run in a fresh interpreter; it prints one JSON line.
PROGRAMS = {
    "reader": r"""
import json, resource, sys, time
import numpy as np, ztf2zarr
store, batch, buffer_mb, worker, workers, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
ztf2zarr.Store(store)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # imports done, no chunk read yet
for b in ztf2zarr.batches(store, batch_size=batch, buffer_mb=buffer_mb, epoch=99, worker=worker, num_workers=workers):
    pass  # warm the page cache
while time.time() < start_at:
    time.sleep(0.001)
t0 = time.time(); n = 0
for b in ztf2zarr.batches(store, batch_size=batch, buffer_mb=buffer_mb, epoch=1, worker=worker, num_workers=workers):
    n += len(b["row"]); x = b["stamps"]
t1 = time.time()
print(json.dumps({"rows": n, "start": t0, "end": t1, "rss_before_mb": base / 1024, "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""",
    "npy": r"""
import json, sys, time
from pathlib import Path
import numpy as np
folder, batch = Path(sys.argv[1]), int(sys.argv[2])
files = sorted(folder.glob("*.npy"))
for f in files:
    np.load(f)
order = np.random.default_rng(1).permutation(len(files))
t0 = time.time()
for start in range(0, len(order), batch):
    x = np.stack([np.load(files[i]) for i in order[start:start + batch]])
print(json.dumps({"rows": len(files), "start": t0, "end": time.time()}))
""",
    "scan": r"""
import json, sys, time
import numpy as np, zarr
stamps = zarr.open(sys.argv[1], mode="r")["stamps"]
size, n = stamps.chunks[0], stamps.shape[0]
for start in range(0, n, size):
    stamps[start:start + size]
t0 = time.time()
for start in range(0, n, size):
    x = stamps[start:start + size]
print(json.dumps({"rows": n, "start": t0, "end": time.time()}))
""",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(args) -> tuple:
    """The alerts, the store and the .npy folder, made once per (count, chunk rows)."""
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    alerts = work / f"alerts-n{args.count}"
    if not (alerts / ".complete").exists():
        log(f"generating {args.count} alerts into {alerts}")
        subprocess.run([str(args.binary), "generate", "-o", str(alerts), "--count", str(args.count)], check=True, stdout=subprocess.DEVNULL)
        (alerts / ".complete").touch()
    rows_tag = args.chunk_rows or "default"
    store = work / f"store-n{args.count}-c{rows_tag}.zarr"
    if not (store / ".zmetadata").exists():
        log(f"building {store}")
        chunk = ["--chunk-rows", str(args.chunk_rows)] if args.chunk_rows else []
        subprocess.run([str(args.binary), "build", str(alerts), "-o", str(store), "--no-progress", *chunk], check=True, stdout=subprocess.DEVNULL)
    npy = work / f"npy-n{args.count}"
    if not (npy / ".complete").exists():
        log(f"writing one .npy per alert into {npy}")
        import numpy as np
        import zarr

        npy.mkdir(exist_ok=True)
        stamps = zarr.open(str(store), mode="r")["stamps"]
        size = stamps.chunks[0]
        for start in range(0, stamps.shape[0], size):
            block = stamps[start : start + size]
            for i, stamp in enumerate(block):
                np.save(npy / f"{start + i:08d}.npy", stamp)
        (npy / ".complete").touch()
    return store, npy


def run_program(name: str, *argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROGRAMS[name], *map(str, argv)], stdout=subprocess.PIPE, text=True)


def result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a measurement failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def reader(store, args, workers: int, buffer_mb: float) -> dict:
    start_at = time.time() + 3.0 + 0.2 * args.count / 1000  # after every process has warmed up
    runs = [run_program("reader", store, args.batch_size, buffer_mb, w, workers, start_at) for w in range(workers)]
    parts = [result(p) for p in runs]
    rows = sum(p["rows"] for p in parts)
    seconds = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    return {"rate": rows / seconds, "rows": rows, "rss_mb": max(p["rss_peak_mb"] - p["rss_before_mb"] for p in parts),
            "rss_peak_mb": max(p["rss_peak_mb"] for p in parts)}


def simple(name: str, *argv) -> dict:
    part = result(run_program(name, *argv))
    return {"rate": part["rows"] / (part["end"] - part["start"]), "rows": part["rows"]}


def best(measure, repeat: int) -> dict:
    runs = [measure() for _ in range(repeat)]
    return max(runs, key=lambda r: r["rate"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=REPO / "tmp" / "bench-reader")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--buffer-mb", type=float, default=None, help="default: ztf2zarr.DEFAULT_BUFFER_MB")
    parser.add_argument("--chunk-rows", type=int, default=None, help="default: the build's default")
    parser.add_argument("--small-buffer-mb", type=float, default=32.0, help="a second buffer size, to show memory follows it")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--binary", type=Path, default=REPO / "target" / "release" / "ztf2zarr")
    args = parser.parse_args()
    import ztf2zarr

    args.buffer_mb = args.buffer_mb or ztf2zarr.DEFAULT_BUFFER_MB
    if not args.binary.is_file():
        log(f"{args.binary} not found: run `cargo build --release` first")
        return 1
    store, npy = prepare(args)
    info = ztf2zarr.Store(store)
    load = os.getloadavg()
    log(f"measuring on {info.rows} rows, chunks of {info.chunk_rows}, buffer {args.buffer_mb} MB "
        f"({ztf2zarr.buffer_rows(store, args.buffer_mb, args.batch_size)} rows); load {load[0]:.1f}")
    small = args.small_buffer_mb
    results = {
        "reader, 1 worker": best(lambda: reader(store, args, 1, args.buffer_mb), args.repeat),
        "reader, 2 workers": best(lambda: reader(store, args, 2, args.buffer_mb), args.repeat),
        f"reader, 1 worker, {small:g} MB buffer": best(lambda: reader(store, args, 1, small), args.repeat),
        ".npy per alert, shuffled": best(lambda: simple("npy", npy, args.batch_size), args.repeat),
        "sequential scan (zarr-python)": best(lambda: simple("scan", store), args.repeat),
    }
    npy_rate = results[".npy per alert, shuffled"]["rate"]
    scan_rate = results["sequential scan (zarr-python)"]["rate"]
    print(f"\n{info.rows} alerts, chunks of {info.chunk_rows} rows, batches of {args.batch_size}, "
          f"buffer {args.buffer_mb} MB; load average {load[0]:.1f} / {os.cpu_count()} cores\n")
    print(f"| access | samples/s | × .npy | × scan | peak RSS above start |")
    print(f"|---|---:|---:|---:|---:|")
    for name, r in results.items():
        rss = f"{r['rss_mb']:.0f} MB" if "rss_mb" in r else ""
        print(f"| {name} | {r['rate']:,.0f} | {r['rate'] / npy_rate:.1f} | {r['rate'] / scan_rate:.2f} | {rss} |")
    one = results["reader, 1 worker"]["rate"]
    print(f"\ntargets: reader ≥ {TARGET_VS_NPY:.0f}× .npy: {'met' if one >= TARGET_VS_NPY * npy_rate else 'NOT met'}; "
          f"reader ≥ {TARGET_VS_SCAN:.0%} of the scan: {'met' if one >= TARGET_VS_SCAN * scan_rate else 'NOT met'}")
    (args.workdir / f"results-n{args.count}.json").write_text(json.dumps(
        {"count": info.rows, "chunk_rows": info.chunk_rows, "buffer_mb": args.buffer_mb, "load": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
