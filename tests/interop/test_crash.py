"""A build killed with SIGKILL leaves a store that zarr-python opens at its previous committed state
(or, once published, the new one), never in between; re-running the build completes it exactly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import SOURCE_DATE_EPOCH, open_root, require_faults, run

NIGHT_1 = ["kowalski-20200202"]
NIGHT_2 = ["fink-alert-simulator-20181129", "ztf-avro-alert"]


def _inputs(data_root, names):
    return [f"{data_root.name}/{n}" for n in names]


def _states(store):
    """(rows, candids, stamps) as zarr-python reads them: plain, then consolidated."""
    import zarr

    plain, consolidated = open_root(store), zarr.open_consolidated(str(store), mode="r")
    states = []
    for root in (plain, consolidated):
        catalog, stamps = root["catalog"][:], root["stamps"][:]
        assert catalog.shape[0] == stamps.shape[0], "catalog and stamps disagree on N"
        states.append((catalog.shape[0], catalog["candid"].tolist(), stamps))
    return states


def _same(a, b):
    return a[:2] == b[:2] and np.array_equal(a[2], b[2])


def _state(store):
    """The store's state, read plain and consolidated, which must agree."""
    plain, consolidated = _states(store)
    assert _same(plain, consolidated)
    return plain


@pytest.fixture(scope="module")
def expected(builder, data_root):
    """The store that night 1 then night 2 must end up as."""
    once = builder.build("crash-expected", _inputs(data_root, NIGHT_1 + NIGHT_2), "--chunk-rows", "64", cwd=data_root.parent)
    return _state(once.store)


def _night_1(binary, data_root, store):
    if store.exists():
        shutil.rmtree(store)
    run(binary, ["build", *_inputs(data_root, NIGHT_1), "-o", store, "--chunk-rows", "64", "--no-progress"], data_root.parent).check()
    return _state(store)


@pytest.mark.parametrize("point", ["after-chunk", "before-metadata", "before-publish", "after-publish"])
def test_killed_at_each_commit_step(binary, data_root, tmp_path, expected, point):
    store = tmp_path / "s.zarr"
    committed = _night_1(binary, data_root, store)
    require_faults(binary)
    env = {**os.environ, "ZTF2ZARR_FAULT": point, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    p = subprocess.run([str(binary), "build", *_inputs(data_root, NIGHT_2), "-o", str(store), "--no-progress"],
                       cwd=data_root.parent, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    assert p.returncode == -signal.SIGKILL, p.stderr
    rows, candids, stamps = _state(store)
    want = expected if point == "after-publish" else committed
    assert (rows, candids) == want[:2]
    assert np.array_equal(stamps, want[2])
    run(binary, ["build", *_inputs(data_root, NIGHT_2), "-o", store, "--no-progress"], data_root.parent).check()
    rows, candids, stamps = _state(store)
    assert (rows, candids) == expected[:2] and np.array_equal(stamps, expected[2])


def test_killed_at_random_moments(binary, data_root, tmp_path, expected):
    """Kill the append after a spread of delays; every time the store reads as one of the two states."""
    store = tmp_path / "s.zarr"
    committed = _night_1(binary, data_root, store)
    seen = set()
    for delay in [0.0, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.25, 0.4]:
        # Published already (by .zmetadata, the commit point): start again from night 1. The
        # plain files may still disagree here, after a kill between commit steps 4 and 5.
        if store.exists() and _states(store)[1][0] == expected[0]:
            committed = _night_1(binary, data_root, store)
        p = subprocess.Popen([str(binary), "build", *_inputs(data_root, NIGHT_2), "-o", str(store), "--no-progress"],
                             cwd=data_root.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        plain, consolidated = _states(store)
        # A kill between the array metadata and .zmetadata (commit steps 4 and 5) leaves plain
        # readers on the new state until the next writer puts the old one back.
        assert _same(plain, consolidated) or (_same(consolidated, committed) and _same(plain, expected))
        rows, candids, stamps = consolidated
        if rows == committed[0]:
            assert candids == committed[1] and np.array_equal(stamps, committed[2])
            seen.add("old")
        else:
            assert (rows, candids) == expected[:2] and np.array_equal(stamps, expected[2])
            seen.add("new")
    run(binary, ["build", *_inputs(data_root, NIGHT_2), "-o", store, "--no-progress"], data_root.parent).check()
    assert _state(store)[:2] == expected[:2]
    assert "old" in seen, "no kill landed before the commit: the delays are too long for this machine"
