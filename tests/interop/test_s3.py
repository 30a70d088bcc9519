"""Stores on object storage (S3, against a local moto server): `build -o s3://…` writes the same
objects as a local build, appends and crashes behave as on a local store, one writer at a time
holds the lock object, errors say what is wrong, and zarr-python (2.18 and 3), pandas, dask,
xarray and the `ztf2zarr` reader read the store through fsspec."""

from __future__ import annotations

import csv
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

import ztf2zarr
from conftest import REPO, SOURCE_DATE_EPOCH, local_files, require_faults, run

ZARR3 = int(zarr.__version__.split(".")[0]) >= 3
NIGHT_1 = ["kowalski-20200202"]
NIGHT_2 = ["fink-alert-simulator-20181129", "ztf-avro-alert"]
CHUNK = ["--chunk-rows", "64"]  # several chunks, and night 1 leaves a partial one for night 2 to rewrite
STORE = "stores/x.zarr"  # a key prefix below the bucket, as a store is usually kept
LOCK = ".ztf2zarr/lock"
PENDING = ".ztf2zarr/pending.json"
TIMEOUT = 300


@pytest.fixture(scope="module")
def cli(binary):
    """The binary, once it is known to write object storage: a build without it would take
    `s3://bucket/x.zarr` for a relative folder path and write `s3:/…` folders beside the inputs."""
    p = subprocess.run([str(binary), "unlock", "--help"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        pytest.fail(f"{binary} has no `unlock` command, so no object-storage support:\n{p.stderr}")
    return binary


def _inputs(data_root, names):
    return [f"{data_root.name}/{n}" for n in names]


def _build(cli, s3, inputs, url, *options, cwd, env=None):
    return run(cli, ["build", *inputs, "-o", url, "--no-progress", *options], cwd, timeout=TIMEOUT,
               env=s3.env if env is None else env)


def _start_build(cli, s3, inputs, url, *options, cwd, fault=None):
    if fault:
        require_faults(cli)
    env = {**s3.env, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, **({"ZTF2ZARR_FAULT": fault} if fault else {})}
    return subprocess.Popen([str(cli), "build", *inputs, "-o", url, "--no-progress", *options], cwd=str(cwd), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_same_objects(local: Path, s3, prefix: str = STORE, only=None, locked: bool = False):
    """Every file of the local store is an object of the same bytes under `prefix`, and nothing
    else is there (`only`: compare just the keys it accepts). The lock object is not part of the
    store: it must be absent (present if `locked`), whatever a local store keeps for its lock."""
    remote = s3.objects(prefix)
    assert (LOCK in remote) == locked, f"lock object {'missing' if locked else 'left behind'}: {remote.get(LOCK)!r}"
    want = {k: v for k, v in local_files(local).items() if k != LOCK and (only is None or only(k))}
    got = {k: v for k, v in remote.items() if k != LOCK and (only is None or only(k))}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, f"keys only local: {missing[:20]}; keys only on s3: {extra[:20]}"
    differ = [k for k in want if want[k] != got[k]]
    assert not differ, f"objects differ from the local store {local.name}: {differ[:20]}"


def chunk_objects(key: str) -> bool:
    return re.fullmatch(r"(stamps|catalog)/\d+(\.\d+)*", key) is not None


def open_s3(url: str, options: dict, consolidated: bool):
    """The store's root group, read through fsspec: from `.zmetadata`, or from each `.zarray`."""
    if ZARR3:
        if consolidated:
            return zarr.open_consolidated(url, mode="r", storage_options=options)
        return zarr.open_group(url, mode="r", storage_options=options, use_consolidated=False)
    import fsspec

    mapper = fsspec.get_mapper(url, **options)
    return zarr.open_consolidated(mapper, mode="r") if consolidated else zarr.open_group(mapper, mode="r")


def open_local(path: Path, consolidated: bool = True):
    if consolidated:
        return zarr.open_consolidated(str(path), mode="r")
    return zarr.open_group(str(path), mode="r", **({"use_consolidated": False} if ZARR3 else {}))


def state(root) -> tuple:
    """(rows, catalog bytes, stamps) of an open store; catalog and stamps must agree on N."""
    catalog, stamps = root["catalog"][:], root["stamps"][:]
    assert catalog.shape[0] == stamps.shape[0], f"catalog has {catalog.shape[0]} rows, stamps {stamps.shape[0]}"
    return catalog.shape[0], catalog.tobytes(), stamps


def same_state(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2], equal_nan=True)


def written(stdout: str) -> int:
    m = re.search(r"written\s+(\d+) alert", stdout)
    assert m, stdout
    return int(m.group(1))


def duplicates(stdout: str) -> int:
    m = re.search(r"duplicates\s+(\d+)", stdout)
    assert m, stdout
    return int(m.group(1))


# ---- local builds the s3 ones are compared with (each built once per session) ----


@pytest.fixture(scope="module")
def night_1(builder, data_root):
    return builder.build("s3-night1", _inputs(data_root, NIGHT_1), *CHUNK, cwd=data_root.parent).store


@pytest.fixture(scope="module")
def both_nights(builder, data_root):
    """Night 1 and night 2 built in one go."""
    return builder.build("s3-both-nights", _inputs(data_root, NIGHT_1 + NIGHT_2), *CHUNK, cwd=data_root.parent).store


@pytest.fixture(scope="module")
def night_1_then_2(binary, data_root, tmp_path_factory):
    """Night 1 built, then night 2 appended: a local store."""
    store = tmp_path_factory.mktemp("s3-append") / "appended.zarr"
    for night in (NIGHT_1, NIGHT_2):
        run(binary, ["build", *_inputs(data_root, night), "-o", store, "--no-progress", *CHUNK], data_root.parent).check()
    return store


# ---- building ----


def test_build_on_s3_writes_the_objects_of_a_local_build(cli, s3, data_root, real_default):
    url = s3.url(STORE)
    r = _build(cli, s3, [data_root.name], url, cwd=data_root.parent).check()
    assert written(r.stdout) == open_local(real_default.store)["catalog"].shape[0]
    assert not s3.exists(f"{STORE}/{PENDING}"), "the pending marker was left behind"
    assert_same_objects(real_default.store, s3)


def test_build_from_a_folder_and_an_archive_on_s3(cli, s3, builder):
    """data-samples: a night folder and a nightly .tar.gz, labelled as the build reads them."""
    inputs = ["data-samples/ztf_public_20250101", "data-samples/ztf_public_20250102.tar.gz"]
    options = ["--labels", "data-samples/labels.csv", "--classes", "QSO,YSO,RRL", "--other", "other", "--chunk-rows", "50"]
    local = builder.build("s3-samples", inputs, *options, cwd=REPO).store
    _build(cli, s3, inputs, s3.url(STORE), *options, cwd=REPO).check()
    assert_same_objects(local, s3)
    root = open_s3(s3.url(STORE), s3.storage_options, True)
    assert root["catalog"].shape == open_local(local)["catalog"].shape and root["catalog"].shape[0] > 0
    assert set(root.attrs["ztf2zarr"]["labels"]["classes"].values()) == {"QSO", "YSO", "RRL", "other"}


def test_inputs_read_from_s3_give_the_rows_of_the_local_inputs(cli, s3, builder, tmp_path):
    """`build s3://bucket/night.tar.gz` streams the archive (and reads a loose .avro object) as
    the local files are read: same rows, same stamps; only the `source` column names the URL."""
    archive = REPO / "data-samples" / "ztf_public_20250102.tar.gz"
    alert = sorted((REPO / "data-samples" / "ztf_public_20250101").glob("*.avro"))[0]
    s3.put("inputs/ztf_public_20250102.tar.gz", archive.read_bytes())
    s3.put(f"inputs/{alert.name}", alert.read_bytes())
    local = builder.build("s3-inputs-local", [str(archive), str(alert)], cwd=REPO).store
    store = tmp_path / "from-s3.zarr"
    r = run(cli, ["build", s3.url("inputs/ztf_public_20250102.tar.gz"), s3.url(f"inputs/{alert.name}"), "-o", str(store),
                  "--no-progress"], REPO, timeout=TIMEOUT, env=s3.env).check()
    a, b = open_local(local), open_local(store)
    catalog_a, catalog_b = a["catalog"][:], b["catalog"][:]
    assert written(r.stdout) == len(catalog_a) > 1
    assert np.array_equal(a["stamps"][:], b["stamps"][:])
    assert catalog_a["candid"].tolist() == catalog_b["candid"].tolist()
    # the source column keeps the last 128 characters of the name: here the URL and the member
    assert "inputs/ztf_public_20250102.tar.gz:ztf_public_20250102/" in str(catalog_b["source"][0])
    missing = run(cli, ["build", s3.url("inputs/none.tar.gz"), "-o", str(tmp_path / "none.zarr"), "--no-progress"], REPO,
                  timeout=TIMEOUT, env=s3.env)
    assert missing.returncode == 2 and "none.tar.gz" in missing.stderr and "no such object" in missing.stderr, missing.stderr


def test_append_on_s3_equals_the_local_append_and_the_one_shot_build(cli, s3, data_root, night_1_then_2, both_nights):
    url = s3.url(STORE)
    first = _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    second = _build(cli, s3, _inputs(data_root, NIGHT_2), url, *CHUNK, cwd=data_root.parent).check()
    rows = open_local(both_nights)["catalog"].shape[0]
    assert written(first.stdout) + written(second.stdout) == rows
    assert_same_objects(night_1_then_2, s3)
    assert_same_objects(both_nights, s3, only=chunk_objects)
    for consolidated in (True, False):
        root = open_s3(url, s3.storage_options, consolidated)
        assert root["catalog"].shape == (rows,) and root["stamps"].shape[0] == rows

    before = s3.listing(STORE)
    time.sleep(1.1)  # a rewrite, even of equal bytes, would show in LastModified
    again = _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent).check()
    assert written(again.stdout) == 0
    assert duplicates(again.stdout) == written(second.stdout)
    assert s3.listing(STORE) == before, "a build with nothing new wrote objects"


def _labels_csv(path: Path, object_ids) -> dict:
    """An ALeRCE-style CSV: every 5th object left out, one row for an object not in the store."""
    classes = ["SNIa", "QSO", "AGN", "YSO"]
    truth = {oid: classes[i % 4] for i, oid in enumerate(object_ids) if i % 5 != 4}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["oid", "predicted_class", "probability"])
        w.writerows([oid, cls, "0.5"] for oid, cls in truth.items())
        w.writerow(["ZTF99zzzzzzz", "RRL", "0.9"])
    return truth


def test_label_split_info_verify_on_s3(cli, s3, data_root, tmp_path):
    inputs = _inputs(data_root, ["kowalski-20200202", "fink-alert-simulator-20181129"])
    local, url = tmp_path / "l.zarr", s3.url(STORE)
    run(cli, ["build", *inputs, "-o", local, "--no-progress", *CHUNK], data_root.parent).check()
    _build(cli, s3, inputs, url, *CHUNK, cwd=data_root.parent).check()
    object_ids = sorted(set(open_local(local)["catalog"][:]["objectId"].astype(str).tolist()))
    truth = _labels_csv(tmp_path / "labels.csv", object_ids)
    for store, env in ((local, None), (url, s3.env)):
        run(cli, ["label", store, "--labels", "labels.csv"], tmp_path, timeout=TIMEOUT, env=env).check()
        run(cli, ["split", store, "--seed", "7"], tmp_path, timeout=TIMEOUT, env=env).check()
    assert_same_objects(local, s3)
    catalog = open_s3(url, s3.storage_options, True)["catalog"][:]
    assert [str(x) for x in catalog["label"]] == [truth.get(str(oid), "") for oid in catalog["objectId"]]

    info = run(cli, ["info", url], tmp_path, timeout=TIMEOUT, env=s3.env).check()
    assert re.search(rf"rows\s+{len(catalog)}\b", info.stdout), info.stdout
    assert url in info.stdout
    assert re.search(r"size\s+[0-9.]+ MB in object storage", info.stdout), info.stdout
    run(cli, ["verify", url], tmp_path, timeout=TIMEOUT, env=s3.env).check()

    s3.put(f"{STORE}/stamps/1.0.0.0", b"not a zstd frame")
    bad = run(cli, ["verify", url], tmp_path, timeout=TIMEOUT, env=s3.env)
    assert bad.returncode == 1, (bad.stdout, bad.stderr)
    assert "stamps/1.0.0.0" in bad.stdout + bad.stderr


# ---- reading through fsspec ----


@pytest.fixture(params=["built", "uploaded"])
def real_on_s3(request, s3, data_root, both_nights):
    """Night 1 + 2 on s3: written by `build -o s3://…`, or built locally and uploaded as it is
    (which reads the same if the two are byte-identical, and tests the readers on their own)."""
    if request.param == "built":
        _build(request.getfixturevalue("cli"), s3, _inputs(data_root, NIGHT_1 + NIGHT_2), s3.url(STORE), *CHUNK,
               cwd=data_root.parent).check()
    else:
        s3.upload(both_nights, STORE)
    return s3.url(STORE), both_nights


@pytest.mark.parametrize("consolidated", [True, False], ids=["consolidated", "plain"])
def test_zarr_pandas_dask_read_the_store_on_s3(real_on_s3, s3, consolidated):
    import dask.array as da

    url, local = real_on_s3
    root, here = open_s3(url, s3.storage_options, consolidated), open_local(local, consolidated)
    pd.testing.assert_frame_equal(pd.DataFrame(root["catalog"][:]), pd.DataFrame(here["catalog"][:]))
    assert np.array_equal(root["stamps"][:], here["stamps"][:], equal_nan=True)
    assert root["stamps"][100:103].shape == (3, 3, 21, 21)
    assert dict(root.attrs) == dict(here.attrs)
    stamps = da.from_zarr(url, component="stamps", storage_options=s3.storage_options)
    assert stamps.shape == here["stamps"].shape and stamps.numblocks[0] == -(-stamps.shape[0] // 64)
    for reduce in ("max", "min"):  # exact whatever the order of the chunks (a float32 mean is not)
        np.testing.assert_array_equal(getattr(stamps, reduce)(axis=(0, 2, 3)).compute(),
                                      getattr(np, reduce)(here["stamps"][:], axis=(0, 2, 3)), err_msg=reduce)


def test_xarray_opens_the_store_on_s3(real_on_s3, s3):
    import xarray as xr

    url, local = real_on_s3
    ds = xr.open_zarr(url, storage_options=s3.storage_options)
    assert ds["stamps"].dims == ("alert", "channel", "y", "x")
    np.testing.assert_array_equal(ds["catalog"].values["candid"], open_local(local)["catalog"][:]["candid"])


# ---- killed mid-append ----

# What a reader sees after the append is killed at each point: (consolidated, plain), each the
# store before the append ("old") or after it ("new"). Before `.zmetadata` is written, a plain
# open already reads every new `.zarray`, and the chunks they name are all there.
SEEN_AFTER_KILL = {
    "after-chunk": ("old", "old"),
    "before-metadata": ("old", "old"),
    "before-consolidated": ("old", "new"),
    "after-commit": ("new", "new"),
}


@pytest.mark.parametrize("point", list(SEEN_AFTER_KILL))
def test_append_killed_at_each_commit_step(cli, s3, data_root, night_1, both_nights, night_1_then_2, point):
    url = s3.url(STORE)
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    states = {"old": state(open_local(night_1)), "new": state(open_local(both_nights))}
    p = _start_build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent, fault=point)
    _, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == -signal.SIGKILL, f"ZTF2ZARR_FAULT={point}: exit {p.returncode}\n{err}"
    assert s3.exists(f"{STORE}/{PENDING}"), f"killed at {point}: no pending marker"
    assert s3.exists(f"{STORE}/{LOCK}"), f"killed at {point}: a SIGKILLed writer cannot have removed its lock"
    for consolidated, want in zip((True, False), SEEN_AFTER_KILL[point]):
        got = state(open_s3(url, s3.storage_options, consolidated))
        assert same_state(got, states[want]), (
            f"killed at {point}, {'consolidated' if consolidated else 'plain'} open: {got[0]} rows, "
            f"expected the {want} state ({states[want][0]} rows)")
    run(cli, ["verify", url], data_root.parent, timeout=TIMEOUT, env=s3.env).check()
    unlocked = run(cli, ["unlock", url], data_root.parent, timeout=TIMEOUT, env=s3.env).check()
    assert not s3.exists(f"{STORE}/{LOCK}"), unlocked.stdout

    _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent).check()
    assert_same_objects(night_1_then_2, s3)
    assert_same_objects(both_nights, s3, only=chunk_objects)


# ---- one writer at a time ----


def _assert_lock_refusal(returncode: int, stderr: str, holder: str, url: str):
    """Exit 2, and the message names the store, the holder and how to break a stale lock."""
    assert returncode == 2, f"exit {returncode}\n{stderr}"
    assert holder in stderr, f"the holder ({holder}) is not named:\n{stderr}"
    assert url in stderr and "ztf2zarr unlock" in stderr, stderr


def test_a_killed_writers_lock_is_taken_over_on_its_machine(cli, s3, data_root, real_default):
    """A writer killed on this machine leaves its lock object; the next writer sees that its
    process is gone and takes the lock over at once, saying so."""
    url = s3.url(STORE)
    inputs = [data_root.name]
    killed = _start_build(cli, s3, inputs, url, cwd=data_root.parent, fault="after-chunk")
    killed.communicate(timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL
    lock = s3.get(f"{STORE}/{LOCK}").decode()
    holder = f"pid {killed.pid} on {socket.gethostname()}"
    assert lock.startswith(holder + " since "), lock
    assert re.search(r"^token [0-9a-f]{16}$", lock, re.M) and re.search(r"^expires-unix \d+$", lock, re.M), lock

    r = _build(cli, s3, inputs, url, cwd=data_root.parent).check()
    assert f"took over the lock of `{url}` from {holder}" in r.stderr and "no longer exists" in r.stderr, r.stderr
    assert_same_objects(real_default.store, s3)


def _lease_lock(holder: str, expires: int) -> bytes:
    return f"{holder} since 2026-01-01T00:00:00Z\ntoken 0123456789abcdef\nexpires-unix {expires}\n".encode()


def test_another_machines_lease_is_judged_by_watching_not_by_its_recorded_expiry(cli, s3, data_root, night_1, night_1_then_2):
    """Nobody renews a lock whose recorded expiry is an hour ahead: a writer without --wait stops
    at once, --wait=1 gives up after a second, and unlock removes it after watching it unchanged
    for a lease (the clocks of two machines need not agree, so the expiry proves nothing). A lock
    whose recorded expiry has passed is watched for a lease, then taken over."""
    url = s3.url(STORE)
    short = {**s3.env, "ZTF2ZARR_LEASE_SECONDS": LEASE}
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    holder = "pid 4242 on build-host-7"
    s3.put(f"{STORE}/{LOCK}", _lease_lock(holder, int(time.time()) + 3600))
    started = time.monotonic()
    r = _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent, env=short)
    _assert_lock_refusal(r.returncode, r.stderr, holder, url)
    assert "lease runs until" in r.stderr, r.stderr
    assert time.monotonic() - started < 15, "a second writer must stop at once"
    started = time.monotonic()
    r = _build(cli, s3, _inputs(data_root, NIGHT_2), url, "--wait=1", cwd=data_root.parent, env=short)
    _assert_lock_refusal(r.returncode, r.stderr, holder, url)
    assert 1 <= time.monotonic() - started < 15, "--wait=1 waits about a second"
    assert_same_objects(night_1, s3, locked=True)

    started = time.monotonic()
    removed = run(cli, ["unlock", url], data_root.parent, timeout=TIMEOUT, env=short).check()
    assert time.monotonic() - started >= int(LEASE), "unlock watches the lock for a lease"
    assert "not renewed" in removed.stdout and holder in removed.stdout, removed.stdout
    assert not s3.exists(f"{STORE}/{LOCK}")

    s3.put(f"{STORE}/{LOCK}", _lease_lock(holder, int(time.time()) - 1))  # a recorded expiry that passed: watched
    started = time.monotonic()
    r = _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent, env=short).check()
    assert time.monotonic() - started >= int(LEASE), "taken over only after a lease of watching"
    assert "waiting to see whether the lock's holder is alive" in r.stderr, r.stderr
    assert f"took over the lock of `{url}` from {holder}" in r.stderr and "lease ran out" in r.stderr, r.stderr
    assert_same_objects(night_1_then_2, s3)


def test_a_holder_that_renews_keeps_its_lock_whatever_expiry_it_records(cli, s3, data_root, night_1):
    """A holder on a machine whose clock is far behind records an expiry long past, but renews
    its lock object: a writer watches it, sees it renewed and stops naming it; so does unlock."""
    import threading

    url = s3.url(STORE)
    short = {**s3.env, "ZTF2ZARR_LEASE_SECONDS": LEASE}
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    holder = "pid 4242 on build-host-7"
    stop = threading.Event()

    def renew():
        n = 0
        while not stop.is_set():
            s3.put(f"{STORE}/{LOCK}", _lease_lock(holder, 1_000_000 + n))
            n += 1
            stop.wait(0.5)

    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        r = _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent, env=short)
        _assert_lock_refusal(r.returncode, r.stderr, holder, url)
        assert "renews its lease" in r.stderr, r.stderr
        refused = run(cli, ["unlock", url], data_root.parent, timeout=TIMEOUT, env=short)
        assert refused.returncode == 2 and holder in refused.stderr and "--force" in refused.stderr, refused.stderr
        assert s3.exists(f"{STORE}/{LOCK}")
    finally:
        stop.set()
        renewer.join()
    assert_same_objects(night_1, s3, locked=True)


def test_a_lock_object_put_by_hand_stops_an_append(cli, s3, data_root, night_1, night_1_then_2):
    url = s3.url(STORE)
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    holder = "pid 4242 on build-host-7"
    s3.put(f"{STORE}/{LOCK}", f"{holder} since 2026-01-01T00:00:00Z\n".encode())
    refused = _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent)
    _assert_lock_refusal(refused.returncode, refused.stderr, holder, url)
    assert_same_objects(night_1, s3, locked=True)

    run(cli, ["unlock", url], data_root.parent, timeout=TIMEOUT, env=s3.env).check()
    _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent).check()
    assert_same_objects(night_1_then_2, s3)


def test_unlock_on_a_local_store_explains_locks_die_with_their_process(cli, tmp_path, night_1):
    store = tmp_path / "l.zarr"
    shutil.copytree(night_1, store)
    r = run(cli, ["unlock", store], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "process" in (r.stdout + r.stderr)
    assert local_files(store) == local_files(night_1)


@pytest.mark.parametrize("wait", [False, True], ids=["no-wait", "wait"])
def test_two_builds_started_together(cli, s3, data_root, both_nights, wait):
    """Either one is refused (the other holds the lock), or they run one after the other: the
    second then finds every candid already there (the inputs have no rejects, so it writes
    nothing) and the store is that of one build."""
    url = s3.url(STORE)
    inputs = _inputs(data_root, NIGHT_1 + NIGHT_2)
    options = [*CHUNK, *(["--wait"] if wait else [])]
    procs = [_start_build(cli, s3, inputs, url, *options, cwd=data_root.parent) for _ in range(2)]
    outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    codes = sorted(p.returncode for p in procs)
    if wait:
        assert codes == [0, 0], outputs
    else:
        assert codes in ([0, 0], [0, 2]), outputs  # both succeed only if they did not overlap
    if codes == [0, 2]:
        winner, loser = sorted(range(2), key=lambda i: procs[i].returncode)
        _assert_lock_refusal(2, outputs[loser][1], f"pid {procs[winner].pid} on {socket.gethostname()}", url)
    rows = open_local(both_nights)["catalog"].shape[0]
    assert sum(written(out) for p, (out, _) in zip(procs, outputs) if p.returncode == 0) == rows
    assert_same_objects(both_nights, s3)


# ---- a writer whose lock was removed while it ran ----


def _wait_stopped(p: subprocess.Popen, timeout: float = TIMEOUT):
    """Wait until `p` has stopped itself (ZTF2ZARR_FAULT=stop-POINT sends it SIGSTOP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert p.poll() is None, f"exit {p.returncode} before it stopped:\n{p.communicate()[1]}"
        if Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.05)
    pytest.fail(f"pid {p.pid} did not stop")


# Where the stale build pauses, and what its message then names: before its marker check (the
# marker, rewritten only if unchanged, refuses it), or just after it, before it writes the objects
# named by its run number (2), which the other build has committed meanwhile: its create fails.
STALE_PAUSES = {"before-metadata": "run the same command again", "after-marker": ".ztf2zarr/candids/000002"}


@pytest.mark.parametrize("point", list(STALE_PAUSES))
def test_a_stale_writer_cannot_overwrite_a_newer_commit(cli, s3, data_root, night_1_then_2, point):
    """A build paused after its chunks (before or after its marker check), its lock removed, a
    second build of another night committed meanwhile: when the first resumes, its commit is
    refused (its marker and the commit point are written only if they are still what it saw, the
    objects named by its run number only if there are none), and the store is the second
    build's, byte for byte (its candid run and rejects log among them), and verify-clean."""
    url = s3.url(STORE)
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    stale = _start_build(cli, s3, _inputs(data_root, ["ztf-avro-alert"]), url, cwd=data_root.parent,
                         fault=f"stop-{point}")
    try:
        _wait_stopped(stale)
        run(cli, ["unlock", "--force", url], data_root.parent, timeout=TIMEOUT, env=s3.env).check()
        _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent).check()
        assert s3.exists(f"{STORE}/.ztf2zarr/candids/000002")
    finally:
        stale.send_signal(signal.SIGCONT)
    _, err = stale.communicate(timeout=TIMEOUT)
    assert stale.returncode == 2, f"exit {stale.returncode}\n{err}"
    assert url in err and "another writer has taken the store over" in err and STALE_PAUSES[point] in err, err
    assert_same_objects(night_1_then_2, s3)
    run(cli, ["verify", url], data_root.parent, timeout=TIMEOUT, env=s3.env).check()


LEASE = "3"  # seconds: a writer paused for longer is renewed (or stopped) before its next write


def _paused_build(cli, s3, data_root, inputs, url, fault):
    require_faults(cli)
    env = {**s3.env, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "ZTF2ZARR_FAULT": fault, "ZTF2ZARR_LEASE_SECONDS": LEASE}
    p = subprocess.Popen([str(cli), "build", *inputs, "-o", url, "--no-progress"], cwd=str(data_root.parent), env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_stopped(p)
    return p


def test_a_paused_writer_whose_lease_ran_out_is_stopped_at_its_next_write(cli, s3, data_root, night_1_then_2):
    """A build paused after its first chunk keeps its lock while its lease runs (the next build
    stops at once, naming it); once the lease has run out the next build watches the lock for a
    lease, sees it not renewed, takes it over and commits; the paused one, resumed, renews before
    its next chunk, finds its lock taken and stops without writing, and leaves the other's lock
    and commit alone."""
    url = s3.url(STORE)
    short = {**s3.env, "ZTF2ZARR_LEASE_SECONDS": LEASE}
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    stale = _paused_build(cli, s3, data_root, _inputs(data_root, ["ztf-avro-alert"]), url, "stop-after-chunk")
    try:
        refused = _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent, env=short)
        _assert_lock_refusal(refused.returncode, refused.stderr, f"pid {stale.pid} on {socket.gethostname()}", url)
        assert "lease runs until" in refused.stderr, refused.stderr
        assert s3.exists(f"{STORE}/{LOCK}")
        time.sleep(int(LEASE) + 1)
        taken = _build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent, env=short).check()
        assert "lease ran out" in taken.stderr, taken.stderr
    finally:
        stale.send_signal(signal.SIGCONT)
    _, err = stale.communicate(timeout=TIMEOUT)
    assert stale.returncode == 2, f"exit {stale.returncode}\n{err}"
    assert url in err and "taken over" in err, err
    assert_same_objects(night_1_then_2, s3)
    run(cli, ["verify", url], data_root.parent, timeout=TIMEOUT, env=s3.env).check()


def test_a_stale_writer_does_not_delete_the_next_writers_lock(cli, s3, data_root, night_1):
    url = s3.url(STORE)
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    stale = _paused_build(cli, s3, data_root, _inputs(data_root, NIGHT_2), url, "stop-before-metadata")
    try:
        time.sleep(int(LEASE) + 1)
        next_lock = _lease_lock("pid 4242 on build-host-7", int(time.time()) + 3600)
        s3.put(f"{STORE}/{LOCK}", next_lock)  # the next writer, which took the lease over
    finally:
        stale.send_signal(signal.SIGCONT)
    _, err = stale.communicate(timeout=TIMEOUT)
    assert stale.returncode == 2, f"exit {stale.returncode}\n{err}"
    assert s3.get(f"{STORE}/{LOCK}") == next_lock, "the stale writer removed or changed the next writer's lock"
    assert state(open_s3(url, s3.storage_options, True))[0] == open_local(night_1)["catalog"].shape[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_writer_removes_what_it_wrote_and_its_lock(cli, s3, data_root, night_1, sig):
    """SIGTERM or SIGINT (delivered while the build is paused after a chunk, so that it lands
    mid-build) stop the build at its next write: its chunks and marker are deleted, its lock
    object removed, and it says that nothing was committed."""
    url = s3.url(STORE)
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent).check()
    p = _start_build(cli, s3, _inputs(data_root, NIGHT_2), url, cwd=data_root.parent, fault="stop-after-chunk")
    try:
        _wait_stopped(p)
        p.send_signal(sig)
    finally:
        p.send_signal(signal.SIGCONT)
    _, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 128 + sig, f"exit {p.returncode} (128 + {sig.name} expected)\n{err}"
    assert f"stopped by {sig.name} before its commit: nothing of this run was committed" in err, err
    assert url in err and "run the same command again" in err, err
    # No lock object, no marker, no chunk of the stopped build: the keys of night 1, and its rows
    # (an incomplete last chunk keeps the rows it was given past the committed shape, unread).
    assert s3.keys(STORE) == sorted(local_files(night_1)), "objects left behind"
    assert same_state(state(open_s3(url, s3.storage_options, True)), state(open_local(night_1)))
    run(cli, ["verify", url], data_root.parent, timeout=TIMEOUT, env=s3.env).check()


def test_a_store_without_conditional_updates_needs_single_writer(cli, s3, data_root, night_1):
    """With conditional puts turned off in the client (as for an S3 API that has none), a
    writer could not be fenced: the build is refused before anything is written, naming the
    store and --single-writer; with --single-writer it is written as usual."""
    url = s3.url(STORE)
    env = {**s3.env, "AWS_CONDITIONAL_PUT": "disabled"}
    refused = _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, cwd=data_root.parent, env=env)
    assert refused.returncode == 2 and url in refused.stderr and "--single-writer" in refused.stderr, refused.stderr
    assert s3.keys(STORE) == []
    _build(cli, s3, _inputs(data_root, NIGHT_1), url, *CHUNK, "--single-writer", cwd=data_root.parent, env=env).check()
    assert_same_objects(night_1, s3)


# ---- errors ----


def test_a_bucket_that_does_not_exist(cli, s3, data_root):
    url = f"s3://{s3.bucket}-missing/x.zarr"
    for args in (["build", *_inputs(data_root, NIGHT_1), "-o", url, "--no-progress"], ["info", url], ["verify", url]):
        started = time.monotonic()
        r = run(cli, args, data_root.parent, timeout=60, env=s3.env)
        assert r.returncode == 2, f"{args[0]}: exit {r.returncode}\n{r.stderr}"
        assert url in r.stderr, r.stderr
        said = f"the bucket `{s3.bucket}-missing` does not exist at {s3.env['AWS_ENDPOINT_URL']}"
        assert said in r.stderr and "<?xml" not in r.stderr, f"{args[0]}: {r.stderr}"
        assert time.monotonic() - started < 20, f"{args[0]} took {time.monotonic() - started:.1f} s to fail"


def test_no_credentials(cli, s3, data_root, tmp_path):
    """No keys in the environment (nor a profile or instance metadata to fall back on)."""
    # No AWS_METADATA_ENDPOINT either: without keys or an instance-role endpoint the binary must
    # refuse at once, never look for credentials on the network.
    env = {k: v for k, v in s3.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(HOME=str(tmp_path))
    url = s3.url(STORE)
    started = time.monotonic()
    r = run(cli, ["build", *_inputs(data_root, NIGHT_1), "-o", url, "--no-progress"], data_root.parent,
            timeout=120, env=env)
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr}"
    assert url in r.stderr and "AWS_ACCESS_KEY_ID" in r.stderr, r.stderr
    assert time.monotonic() - started < 30
    assert s3.keys(STORE) == [], "objects were written without credentials"


# ---- the ztf2zarr reader on object storage ----


@pytest.fixture(scope="module")
def synthetic(binary, tmp_path_factory):
    """300 synthetic labelled alerts in 16-row chunks, split: a local store and its inputs."""
    work = tmp_path_factory.mktemp("s3-reader")
    run(binary, ["generate", "-o", work / "alerts", "--count", 300, "--labels", "labels.csv"], work).check()
    labels = next((work / "alerts").rglob("labels.csv"))
    store = work / "reader.zarr"
    options = ["--chunk-rows", "16", "--labels", labels]
    run(binary, ["build", work / "alerts", "-o", store, "--no-progress", *options], work).check()
    run(binary, ["split", store, "--seed", "3"], work).check()
    return work, store, options


@pytest.fixture(params=["built", "uploaded"])
def synthetic_on_s3(request, synthetic, s3):
    work, store, options = synthetic
    url = s3.url(STORE)
    if request.param == "built":
        cli = request.getfixturevalue("cli")
        _build(cli, s3, [work / "alerts"], url, *options, cwd=work).check()
        run(cli, ["split", url, "--seed", "3"], work, timeout=TIMEOUT, env=s3.env).check()
        assert_same_objects(store, s3)
    else:
        s3.upload(store, STORE)
    return url, store


def _epoch(store, **options) -> list:
    return list(ztf2zarr.batches(store, batch_size=40, seed=4, epoch=1, buffer_mb=0.1, columns=("objectId", "jd"), **options))


def test_reader_gives_the_local_batches_from_s3(synthetic_on_s3, s3):
    url, local = synthetic_on_s3
    for engine in ("direct", "zarr"):
        store = ztf2zarr.Store(url, engine=engine, storage_options=s3.storage_options)
        assert store.engine == engine and store.classes == ztf2zarr.Store(local).classes
        for split in (None, "train"):
            want = _epoch(local, split=split)
            got = _epoch(url, split=split, engine=engine, storage_options=s3.storage_options)
            assert len(got) == len(want) > 2, (engine, split)
            for g, w in zip(got, want):
                assert g.keys() == w.keys()
                for name in w:
                    np.testing.assert_array_equal(g[name], w[name], err_msg=f"{engine}, split {split}: {name}")
            rows = ztf2zarr.count_rows(url, split=split, engine=engine, storage_options=s3.storage_options)
            assert rows == sum(len(b["row"]) for b in want), (engine, split)


def test_reader_auto_engine_reads_a_url_directly(synthetic, s3):
    s3.upload(synthetic[1], STORE)
    store = ztf2zarr.Store(s3.url(STORE), storage_options=s3.storage_options)
    assert store.engine == "direct" and sorted(store.splits) == ["test", "train", "val"]
    assert ztf2zarr.buffer_rows(s3.url(STORE), 0.1, 40, storage_options=s3.storage_options) == ztf2zarr.buffer_rows(
        synthetic[1], 0.1, 40)


def test_reader_errors_on_s3_name_the_object(synthetic, s3):
    url = s3.url(STORE)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{url}/: no store there")):
        ztf2zarr.Store(url, storage_options=s3.storage_options)
    s3.upload(synthetic[1], STORE)
    s3.put(f"{STORE}/stamps/3.0.0.0", b"not zstd at all")
    with pytest.raises(ValueError, match=re.escape(f"{url}/stamps/3.0.0.0: chunk does not decode")):
        for _ in ztf2zarr.batches(url, batch_size=64, storage_options=s3.storage_options):
            pass
    with pytest.raises(ValueError, match="storage_options are for a store named by URL"):
        ztf2zarr.Store(synthetic[1], storage_options=s3.storage_options)


# ---- docs/object-storage.md ----

DOC = REPO / "docs" / "object-storage.md"
DOC_ENDPOINT, DOC_BUCKET = "http://127.0.0.1:5000", "my-bucket"


def _doc_for(s3) -> str:
    """The page with the test's moto endpoint and bucket in place of the documented ones."""
    return DOC.read_text().replace(DOC_ENDPOINT, s3.endpoint).replace(DOC_BUCKET, s3.bucket)


def _python_blocks(text: str) -> list:
    """The page's ```python blocks, and its ```python-zarr3 ones where zarr-python is 3, in order."""
    kinds = ("python", "python-zarr3") if ZARR3 else ("python",)
    return [code for kind, code in re.findall(r"```([\w-]+)\n(.*?)```", text, re.S) if kind in kinds]


def test_object_storage_doc_examples_run(cli, s3, tmp_path, monkeypatch):
    text = _doc_for(s3)
    commands = [line.split() for block in re.findall(r"```sh\n(.*?)```", text, re.S)
                for line in block.splitlines() if line.startswith("ztf2zarr ")]
    assert [c[1] for c in commands] == ["build", "build", "split", "info", "verify", "unlock"], commands
    (tmp_path / "data-samples").symlink_to(REPO / "data-samples")
    for command in commands:
        run(cli, command[1:], cwd=tmp_path, timeout=TIMEOUT, env=s3.env).check()
    assert not s3.exists(f"samples.zarr/{LOCK}")

    kinds = set(re.findall(r"```([\w-]+)\n", text))
    assert kinds == {"sh", "python", "python-zarr3"}, f"blocks of a kind this test does not run: {kinds}"
    blocks = _python_blocks(text)
    assert len(blocks) >= 4
    for name, value in s3.env.items():  # what the page exports before it runs anything
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile("\n\n".join(blocks), str(DOC), "exec"), namespace)
    assert namespace["root"]["catalog"].shape[0] == len(namespace["catalog"]) > 0
    assert sorted(namespace["seen"]) == sorted(namespace["train"].tolist()) and namespace["seen"]
