"""Session fixtures: the release binary, the real alert folder and the stores built from it.

The binary is `target/release/ztf2zarr` (or $ZTF2ZARR_BIN); it is built by scripts/test, never here.
The real alerts are $ZTF_ALERTS, else <repo>/../shared/data/ztf-alerts.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

import ztfref

REPO = ztfref.REPO


def _binary() -> Path:
    if os.environ.get("ZTF2ZARR_BIN"):
        return Path(os.environ["ZTF2ZARR_BIN"]).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return (target / "release" / "ztf2zarr").resolve()


@pytest.fixture(scope="session")
def binary() -> Path:
    b = _binary()
    if not b.is_file():
        pytest.fail(f"{b} not found: run `cargo build --release` first (scripts/test does)")
    return b


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("ZTF_ALERTS") or REPO.parent / "shared" / "data" / "ztf-alerts").resolve()
    if not (root / "MANIFEST.md").is_file():
        pytest.fail(f"real alert folder not found at {root} (set ZTF_ALERTS)")
    return root


@dataclasses.dataclass
class Run:
    args: list
    cwd: Path
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "Run":
        assert self.returncode == 0, (
            f"ztf2zarr {' '.join(map(str, self.args))} exited {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )
        return self


# Provenance records carry build times; a fixed SOURCE_DATE_EPOCH makes equal inputs give
# byte-identical stores, which the determinism tests compare.
SOURCE_DATE_EPOCH = "1767225600"


def run(binary: Path, args, cwd: Path, timeout: int = 900) -> Run:
    args = [str(a) for a in args]
    p = subprocess.run(
        [str(binary), *args],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
    )
    return Run(args, Path(cwd), p.returncode, p.stdout, p.stderr)


@dataclasses.dataclass
class Build:
    store: Path
    run: Run


class Builder:
    """Builds each store once per session (keyed by name)."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self._cache: dict[str, Build] = {}

    def build(self, name: str, inputs, *options, cwd: Path, check: bool = True) -> Build:
        if name not in self._cache:
            store = self.workdir / f"{name}.zarr"
            r = run(self.binary, ["build", *inputs, "-o", store, "--no-progress", *options], cwd)
            self._cache[name] = Build(store, r)
        b = self._cache[name]
        if check:
            b.run.check()
            assert b.store.is_dir(), f"{b.store} was not written"
        return b


@pytest.fixture(scope="session")
def builder(binary, tmp_path_factory) -> Builder:
    return Builder(binary, tmp_path_factory.mktemp("stores"))


@dataclasses.dataclass
class Expectation:
    """What a build of the whole real folder must give, computed with fastavro + astropy."""

    rows: list  # (source, path) of each accepted alert, in input order
    rejects: dict  # source -> BadAlert kind
    duplicates: list  # sources of alerts whose candid was already written


@pytest.fixture(scope="session")
def real_expectation(data_root) -> Expectation:
    rows, rejects, duplicates, seen = [], {}, [], set()
    for path in ztfref.walk(data_root):
        source = str(path.relative_to(data_root.parent))
        kind = ztfref.classify_file(path)
        if kind is not None:
            rejects[source] = kind
            continue
        candid = ztfref.alert_from_file(str(path)).candid
        if candid in seen:
            duplicates.append(source)
            continue
        seen.add(candid)
        rows.append((source, path))
    return Expectation(rows, rejects, duplicates)


# The real folder is built by naming it relative to its parent, so `source` is
# "ztf-alerts/<path inside the folder>" and the file is data_root.parent / source.


@pytest.fixture(scope="session")
def real_default(builder, data_root) -> Build:
    return builder.build("real-default", [data_root.name], cwd=data_root.parent)


@pytest.fixture(scope="session")
def real_keepnan63(builder, data_root) -> Build:
    return builder.build(
        "real-keepnan63", [data_root.name], "--stamp-size", "63", "--keep-nan", cwd=data_root.parent
    )


def open_root(path: Path):
    import zarr

    return zarr.open(str(path), mode="r")
