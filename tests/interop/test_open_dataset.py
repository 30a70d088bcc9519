"""`ztf2zarr.open_dataset`: the store as a lazy xarray Dataset, one variable per catalog column,
each catalog chunk decoded once however many columns are computed together, stamps with their
dimension names and plane names, class names to select on, and the light-curve tables on their
own dimensions; the same values through either engine."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import ztf2zarr
from ztf2zarr import _store
from conftest import open_root, run


@pytest.fixture(scope="module")
def labeled(binary, tmp_path_factory):
    """40 synthetic labeled alerts in 3 chunks of 16 rows, split."""
    work = tmp_path_factory.mktemp("open_dataset")
    run(binary, ["generate", "-o", work / "night", "--count", 40, "--labels", "labels.csv",
                 "--schema", "4.02"], work).check()
    store = work / "labeled.zarr"
    run(binary, ["build", work / "night", "-o", store, "--no-progress", "--chunk-rows", 16,
                 "--labels", work / "night" / "labels.csv"], work).check()
    run(binary, ["split", store, "--seed", "3"], work).check()
    return store


def test_every_catalog_column_is_a_variable_on_the_alert_dimension(labeled):
    ds = ztf2zarr.open_dataset(labeled)
    root = open_root(labeled)
    catalog = root["catalog"][:]
    assert dict(ds.sizes) == {"alert": 40, "channel": 3, "y": 21, "x": 21}
    assert list(ds.data_vars) == [*catalog.dtype.names, "stamps"]
    for name in catalog.dtype.names:
        assert ds[name].dims == ("alert",) and ds[name].chunks == ((16, 16, 8),), name
        np.testing.assert_array_equal(ds[name].values, catalog[name], err_msg=name)
    assert ds["jd"].attrs["description"].startswith("Observation Julian date") and ds["fid"].attrs["missing"] == "-2147483648"
    assert ds["stamps"].dims == ("alert", "channel", "y", "x")
    assert list(ds["channel"].values) == ["science", "template", "difference"]
    np.testing.assert_array_equal(ds["stamps"].sel(channel="difference").values, root["stamps"][:, 2])
    assert ds.attrs["classes"] == {int(k): v for k, v in root.attrs["ztf2zarr"]["labels"]["classes"].items()}
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(ds.attrs["splits"][split], root[f"splits/{split}"][:])


def test_labels_select_by_class_name(labeled):
    ds = ztf2zarr.open_dataset(labeled)
    codes = open_root(labeled)["catalog"][:]["label_code"]
    name, code = next((n, c) for c, n in ds.attrs["classes"].items() if 0 < (codes == c).sum() < len(codes))
    masked = ds.where(ds.label == name)                               # lazy, NaN elsewhere
    assert int(masked["candid"].notnull().sum()) == int((codes == code).sum())
    chosen = ds.where((ds.label == name).compute(), drop=True)
    assert chosen.sizes["alert"] == int((codes == code).sum())
    assert set(chosen["label_code"].values.astype(int)) == {code}
    np.testing.assert_array_equal(chosen["stamps"].values, open_root(labeled)["stamps"][:][codes == code])


def test_each_catalog_chunk_is_decoded_once_for_all_columns(labeled, monkeypatch):
    decoded = []
    decode = _store._DirectArray.decode

    def counting(self, index, data, scratch=None):
        if self.prefix == "catalog":
            decoded.append(index)
        return decode(self, index, data, scratch)

    monkeypatch.setattr(_store._DirectArray, "decode", counting)
    ds = ztf2zarr.open_dataset(labeled)
    assert decoded == [], "opening read catalog chunks"
    columns = ds.drop_vars("stamps").compute()
    assert len(columns.data_vars) > 100
    assert sorted(decoded) == [0, 1, 2], f"catalog chunks decoded: {decoded}"
    assert columns["candid"].values.tolist() == open_root(labeled)["catalog"][:]["candid"].tolist()


def test_lightcurve_tables_open_on_their_own_dimensions(labeled):
    root = open_root(labeled)
    for group, dim in (("epochs", "epoch"), ("forced", "forced_epoch"), ("objects", "object_range"), ("alerts", "alert")):
        table = ztf2zarr.open_dataset(labeled, group=f"lightcurves/{group}")
        expected = xr.open_zarr(labeled, group=f"lightcurves/{group}")
        assert list(table.data_vars) == table.attrs["columns"] == root[f"lightcurves/{group}"].attrs["columns"]
        assert table.sizes[dim] == expected.sizes[dim] > 0, group
        for name in table.data_vars:
            assert table[name].dims == (dim,)
            np.testing.assert_array_equal(table[name].values, expected[name].values, err_msg=f"{group}/{name}")
    epochs = ztf2zarr.open_dataset(labeled, group="lightcurves/epochs")
    assert set(epochs["kind"].values) == {"detection", "upper_limit"}
    assert epochs["magpsf"].attrs["description"].startswith("Magnitude from PSF-fit")


def test_the_zarr_engine_gives_the_same_dataset(labeled):
    direct = ztf2zarr.open_dataset(labeled).compute()
    through_zarr = ztf2zarr.open_dataset(labeled, engine="zarr").compute()
    xr.testing.assert_identical(direct, through_zarr.assign_attrs(splits=direct.attrs["splits"]))
    assert sorted(through_zarr.attrs["splits"]) == ["test", "train", "val"]


def test_refusals_name_the_store_and_the_reason(labeled, tmp_path, binary):
    with pytest.raises(ValueError, match="group must be one of"):
        ztf2zarr.open_dataset(labeled, group="lightcurves/nope")
    bare = tmp_path / "bare.zarr"
    run(binary, ["generate", "-o", tmp_path / "in", "--count", 3], tmp_path).check()
    run(binary, ["build", tmp_path / "in", "-o", bare, "--no-progress", "--no-lightcurves"], tmp_path).check()
    with pytest.raises(ValueError, match=f"{bare}: no lightcurves/epochs in this store"):
        ztf2zarr.open_dataset(bare, group="lightcurves/epochs")
    unlabeled = ztf2zarr.open_dataset(bare)
    assert unlabeled.attrs["classes"] == {} and set(unlabeled["label"].values) == {""}
    with pytest.raises(FileNotFoundError, match="no such store folder"):
        ztf2zarr.open_dataset(tmp_path / "missing.zarr")
