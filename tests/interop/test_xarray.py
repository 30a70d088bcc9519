"""xarray opens every store: each array names its dimensions (`_ARRAY_DIMENSIONS`), stores
written before that get them at their next commit, and such an old store keeps its own stamp
filter when appended to."""

from __future__ import annotations

import json
import shutil

import numcodecs
import numpy as np
import pytest
import xarray as xr

from conftest import open_root, run

DIMS = "_ARRAY_DIMENSIONS"


@pytest.fixture(scope="session")
def nights(binary, tmp_path_factory):
    """Two nights of synthetic alerts: 40 labeled, then 30 more."""
    work = tmp_path_factory.mktemp("xarray")
    run(binary, ["generate", "-o", work / "night1", "--count", 40, "--labels", "labels.csv"], work).check()
    run(binary, ["generate", "-o", work / "night2", "--count", 30, "--first-candid", "1100000000017000000"], work).check()
    return work


def build(binary, work, name, *inputs, options=()):
    store = work / f"{name}.zarr"
    run(binary, ["build", *inputs, "-o", store, "--no-progress", "--chunk-rows", 16, *options], work).check()
    return store


def test_open_zarr_gives_stamps_and_catalog_on_the_alert_dimension(binary, nights):
    store = build(binary, nights, "labeled", nights / "night1", options=["--labels", nights / "night1" / "labels.csv"])
    run(binary, ["split", store, "--seed", "2"], nights).check()
    ds = xr.open_zarr(store)
    assert ds["stamps"].dims == ("alert", "channel", "y", "x")
    assert ds["catalog"].dims == ("alert",)
    assert dict(ds.sizes) == {"alert": 40, "channel": 3, "y": 21, "x": 21}
    root = open_root(store)
    np.testing.assert_array_equal(ds["stamps"].values, root["stamps"][:])
    np.testing.assert_array_equal(ds["catalog"].values["candid"], root["catalog"][:]["candid"])
    assert ds["catalog"].attrs["candid"], "column descriptions are the catalog variable's attrs"
    splits = xr.open_zarr(store, group="splits")
    sizes = {name: splits[name].size for name in ("train", "val", "test")}
    assert sum(sizes.values()) == 40
    np.testing.assert_array_equal(splits["train"].values, root["splits/train"][:])
    assert splits["train"].dtype == np.int64, "a fill value made xarray mask row indices"


def _strip_dimensions_and_filter(store):
    """Make `store` look like one written before dimension names and the stamp filter: no
    `_ARRAY_DIMENSIONS` but on stamps, stamps chunks zstd only, `filters: null`."""
    consolidated = json.loads((store / ".zmetadata").read_text())
    meta = consolidated["metadata"]
    for key, value in meta.items():
        if key.endswith("/.zattrs") and not key.startswith("stamps/"):
            value.pop(DIMS, None)
            (store / key).write_text(json.dumps(value))
    zarray = meta["stamps/.zarray"]
    assert zarray["filters"] == [{"id": "shuffle", "elementsize": 4}], "new stores shuffle the stamps"
    filters = [numcodecs.get_codec(f) for f in zarray["filters"]]
    zstd = numcodecs.get_codec(zarray["compressor"])
    for chunk in sorted((store / "stamps").glob("*.0.0.0")):
        raw = zstd.decode(chunk.read_bytes())
        for codec in reversed(filters):
            raw = codec.decode(raw)
        chunk.write_bytes(zstd.encode(bytes(raw)))
    zarray["filters"] = None
    (store / "stamps" / ".zarray").write_text(json.dumps(zarray))
    (store / ".zmetadata").write_text(json.dumps(consolidated))


def test_an_old_store_gets_dimensions_at_its_next_append_and_keeps_its_filter(binary, nights):
    store = build(binary, nights, "old", nights / "night1")
    run(binary, ["split", store, "--seed", "2"], nights).check()
    _strip_dimensions_and_filter(store)
    with pytest.raises(Exception):  # zarr 3: KeyError naming _ARRAY_DIMENSIONS; 2.18: another error
        xr.open_zarr(store)
    before = open_root(store)["stamps"][:]

    run(binary, ["build", nights / "night2", "-o", store, "--no-progress"], nights).check()

    meta = json.loads((store / ".zmetadata").read_text())["metadata"]
    assert meta["catalog/.zattrs"][DIMS] == ["alert"]
    assert meta["splits/train/.zattrs"][DIMS] == ["train_index"]
    assert json.loads((store / "catalog" / ".zattrs").read_text())[DIMS] == ["alert"]
    assert meta["stamps/.zarray"]["filters"] is None, "the append changed the store's filter"
    assert meta["splits/train/.zarray"]["fill_value"] is None
    ds = xr.open_zarr(store)
    assert ds.sizes["alert"] == 70
    fresh = build(binary, nights, "fresh", nights / "night1", nights / "night2")
    expected = open_root(fresh)["stamps"][:]
    np.testing.assert_array_equal(ds["stamps"].values, expected)
    np.testing.assert_array_equal(ds["stamps"].values[:40], before)
    run(binary, ["verify", store], nights).check()
    shutil.rmtree(fresh)
