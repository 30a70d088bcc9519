"""Session fixtures: the release binary, the real alert folder and the stores built from it, and
a local S3 API (moto) for the object-storage tests.

The binary is `target/release/ztf2zarr` (or $ZTF2ZARR_BIN); it is built by scripts/test, never here.
The real alerts are $ZTF_ALERTS, else <repo>/../shared/data/ztf-alerts. moto_server is the one
installed beside the interpreter running pytest; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


@functools.lru_cache(maxsize=None)
def _version(binary: Path) -> str:
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout.strip()


def require_faults(binary: Path) -> None:
    """Fail (never skip) a test that kills, stops or fails a build at a named point
    (`ZTF2ZARR_FAULT`) when `binary` was built without those hooks: it would not test them."""
    version = _version(Path(binary))
    if "fault-injection" not in version:
        pytest.fail(f"{binary} ({version}) has no fault hooks, which this test needs (ZTF2ZARR_FAULT): build it with "
                    "`cargo build --release --features fault-injection,generate` (scripts/test does)")


def run(binary: Path, args, cwd: Path, timeout: int = 900, env: dict | None = None) -> Run:
    """Run the binary to the end. `env`: the whole environment (default: this process's);
    SOURCE_DATE_EPOCH is always set."""
    args = [str(a) for a in args]
    p = subprocess.run(
        [str(binary), *args],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**(os.environ if env is None else env), "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
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


# ---- object storage: a moto S3 server for the session, a fresh bucket per test ----

MOTO_KEY = MOTO_SECRET = "testing"
MOTO_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:  # an HTTP answer, even an error, means it is serving
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> str:
    """http://127.0.0.1:PORT of a moto_server started for the session (stopped at its end)."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.is_file():
        pytest.fail(f"{server} not found: install tests/interop/requirements-zarr*.lock (moto, flask)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _answers(endpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server on {endpoint} did not start (exit {proc.poll()}):\n{log_path.read_text()}")
            time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _without_aws(environ) -> dict:
    """`environ` less every AWS_* variable, so no real account or profile of this machine is used."""
    return {k: v for k, v in environ.items() if not k.startswith("AWS_")}


@dataclasses.dataclass
class S3:
    """One test's bucket on the moto server, with what each client needs to reach it."""

    endpoint: str
    bucket: str
    client: object  # boto3 S3 client

    @property
    def env(self) -> dict:
        """The environment for the binary: this process's, with only moto's AWS settings."""
        return {**_without_aws(os.environ), "AWS_ACCESS_KEY_ID": MOTO_KEY, "AWS_SECRET_ACCESS_KEY": MOTO_SECRET,
                "AWS_REGION": MOTO_REGION, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    @property
    def storage_options(self) -> dict:
        """fsspec/s3fs options. Listings are not cached: the store changes under the reader."""
        return {"endpoint_url": self.endpoint, "key": MOTO_KEY, "secret": MOTO_SECRET,
                "client_kwargs": {"region_name": MOTO_REGION}, "use_listings_cache": False}

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def listing(self, prefix: str) -> dict:
        """{key relative to `prefix/`: (LastModified, ETag)} of every object under it."""
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{prefix}/"):
            found.update({o["Key"][len(prefix) + 1 :]: (o["LastModified"], o["ETag"]) for o in page.get("Contents", [])})
        return found

    def keys(self, prefix: str) -> list:
        """Every key under `prefix/`, relative to it, sorted."""
        return sorted(self.listing(prefix))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key: str, data: bytes):
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def exists(self, key: str) -> bool:
        import botocore.exceptions

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except botocore.exceptions.ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey"):
                return False
            raise

    def objects(self, prefix: str) -> dict:
        """{key relative to prefix: bytes} of every object under `prefix/`."""
        return {key: self.get(f"{prefix}/{key}") for key in self.keys(prefix)}

    def upload(self, folder: Path, prefix: str):
        """Put every file of `folder` under `prefix/` (a store built locally, copied as it is)."""
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self.put(f"{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes())


_buckets = itertools.count()


@pytest.fixture
def s3(moto_endpoint, request) -> S3:
    """A fresh, empty bucket for this test (named after it)."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name=MOTO_REGION)
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())
    bucket = f"t{next(_buckets):03d}-{name}"[:63].rstrip("-")
    client.create_bucket(Bucket=bucket)
    return S3(moto_endpoint, bucket, client)


def local_files(store: Path) -> dict:
    """{key: bytes} of every file of a local store, keys as on object storage."""
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


# ---- Rubin (LSST) alerts ----


@pytest.fixture(scope="session")
def lsst_root() -> Path:
    """The Rubin alert folder: $LSST_ALERTS, else <repo>/../shared/data/lsst-alerts (its
    MANIFEST.md describes it). Missing, the tests that need it fail naming it."""
    root = Path(os.environ.get("LSST_ALERTS") or REPO.parent / "shared" / "data" / "lsst-alerts").resolve()
    if not (root / "MANIFEST.md").is_file():
        pytest.fail(f"Rubin alert folder not found at {root} (set LSST_ALERTS)")
    for part in ("boom", "fink-v10.0", "fink-v10.0-container", "fake", "schema"):
        if not (root / part).is_dir():
            pytest.fail(f"{root / part} not found: the Rubin alert folder is incomplete (set LSST_ALERTS)")
    return root


@pytest.fixture(scope="session")
def lsst_real(builder, lsst_root) -> Build:
    """The 21 real Rubin alerts (boom's one and Fink's 20 single messages), default options.
    Built by naming the folders relative to the data folder's parent: `source` is
    "lsst-alerts/<path inside the folder>"."""
    return builder.build("lsst-real", [f"{lsst_root.name}/boom", f"{lsst_root.name}/fink-v10.0"], cwd=lsst_root.parent)
