"""The store opens with zarr-python (2.18 and 3.x), pandas and dask, and its metadata is as documented."""

from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pandas as pd
import pytest
import zarr

import ztfref
from conftest import open_root

N_REAL = 529


def test_zarr_version_is_one_we_test_against():
    major = int(zarr.__version__.split(".")[0])
    assert major in (2, 3), zarr.__version__
    if os.environ.get("ZTF2ZARR_EXPECT_ZARR"):  # set by scripts/test for each venv
        assert major == int(os.environ["ZTF2ZARR_EXPECT_ZARR"]), zarr.__version__
    if major == 2:
        assert zarr.__version__.startswith("2.18."), zarr.__version__


@pytest.mark.parametrize("consolidated", [False, True], ids=["open", "open_consolidated"])
def test_open_stamps_and_catalog(real_default, consolidated):
    path = str(real_default.store)
    root = zarr.open_consolidated(path, mode="r") if consolidated else zarr.open(path, mode="r")
    stamps = root["stamps"]
    assert stamps.shape == (N_REAL, 3, 21, 21)
    assert stamps.dtype == np.float32
    catalog = root["catalog"]
    assert catalog.shape == (N_REAL,)
    assert catalog.dtype == ztfref.catalog_dtype()
    first = stamps[0]
    assert first.shape == (3, 21, 21) and first.dtype == np.float32
    assert np.isfinite(stamps[:]).all()  # default NaN policy is zero


def test_consolidated_metadata_matches_the_array_files(real_default):
    store = real_default.store
    zmeta = ztfref.read_json(store / ".zmetadata")
    assert zmeta["zarr_consolidated_format"] == 1
    meta = zmeta["metadata"]
    expected_keys = {
        ".zgroup",
        ".zattrs",
        "stamps/.zarray",
        "stamps/.zattrs",
        "catalog/.zarray",
        "catalog/.zattrs",
        "lightcurves/.zgroup",
        "lightcurves/.zattrs",
    }
    # The light-curve tables are groups of one array per column; the history arrays plain arrays.
    table_columns = {
        "epochs": [c.name for c in ztfref.table_columns("epochs.tsv")],
        "forced": [c.name for c in ztfref.table_columns("forced.tsv")],
        "objects": ["objectId", "table", "start", "count"],
        "alerts": ["history_start", "history_count", "forced_start", "forced_count"],
    }
    for name, columns in table_columns.items():
        expected_keys |= {f"lightcurves/{name}/.zgroup", f"lightcurves/{name}/.zattrs"}
        expected_keys |= {f"lightcurves/{name}/{c}/{key}" for c in columns for key in (".zarray", ".zattrs")}
    for name in ["history_epochs", "history_forced"]:
        expected_keys |= {f"lightcurves/{name}/.zarray", f"lightcurves/{name}/.zattrs"}
    assert set(meta) == expected_keys
    for key in expected_keys:
        assert meta[key] == ztfref.read_json(store / key), key


def test_dataframe_columns_are_catalog_tsv(real_default):
    root = open_root(real_default.store)
    df = pd.DataFrame(root["catalog"][:])
    names = [c.name for c in ztfref.catalog_columns()]
    assert list(df.columns) == names
    assert len(df) == N_REAL
    assert df["candid"].is_unique
    assert df["candid"].dtype == np.int64
    assert (df["objectId"].str.len() == 12).all()


def test_group_attrs(real_default):
    root = open_root(real_default.store)
    attrs = dict(root.attrs)
    assert isinstance(attrs["catalog"], str) and attrs["catalog"]
    assert isinstance(attrs["stamps"], str) and attrs["stamps"]
    meta = attrs["ztf2zarr"]
    assert meta["stamp_size"] == 21
    assert meta["nan_policy"] == "zero"
    assert isinstance(meta["version"], str) and meta["version"]
    assert set(meta["stamp_flags"]) == {"1", "2", "4", "8"}
    assert all(isinstance(v, str) and v for v in meta["stamp_flags"].values())
    assert isinstance(meta["missing_values"], dict) and meta["missing_values"]


def test_catalog_attrs_cover_every_column(real_default):
    cat_attrs = dict(open_root(real_default.store)["catalog"].attrs)
    names = [c.name for c in ztfref.catalog_columns()]
    assert cat_attrs.pop("_ARRAY_DIMENSIONS") == ["alert"]  # for xarray
    assert sorted(cat_attrs) == sorted(names)
    assert all(isinstance(cat_attrs[n], str) and cat_attrs[n] for n in names)


def _writer_schema_docs(path: Path) -> dict:
    """Field docs of one file's writer schema: top-level alert fields and candidate fields."""
    import fastavro
    with open(path, "rb") as fh:
        schema = fastavro.reader(fh).writer_schema
    docs = {}
    for field in schema["fields"]:
        if field.get("doc"):
            docs.setdefault(field["name"], field["doc"])
        if field["name"] == "candidate":
            record = field["type"] if isinstance(field["type"], dict) else next(t for t in field["type"] if isinstance(t, dict))
            for inner in record["fields"]:
                if inner.get("doc") and inner["name"] != "candid":
                    docs[inner["name"]] = inner["doc"]
    return docs


def test_catalog_attrs_come_from_the_first_writer_schema_that_documents_a_column(real_default, data_root):
    """ZTF's own doc strings describe the columns (the first written alert whose writer schema documents
    a column wins); columns no schema documents keep schemas/catalog.tsv's description."""
    cat_attrs = dict(open_root(real_default.store)["catalog"].attrs)
    expected = {c.name: None for c in ztfref.catalog_columns()}
    sources = dict.fromkeys(open_root(real_default.store)["catalog"][:]["source"])  # row order, distinct
    for source in sources:
        for name, doc in _writer_schema_docs(data_root.parent / source).items():
            if name in expected and expected[name] is None:
                expected[name] = doc
    tsv = {c.name: c.description for c in ztfref.catalog_columns()}
    differ = {name: (cat_attrs.get(name), doc or tsv[name]) for name, doc in expected.items() if cat_attrs.get(name) != (doc or tsv[name])}
    assert not differ, "\n".join(f"{k}: store {v[0]!r} != expected {v[1]!r}" for k, v in differ.items())
    assert cat_attrs["jd"] == "Observation Julian date at start of exposure [days]"


def test_stamps_attrs(real_default):
    root = open_root(real_default.store)
    st_attrs = dict(root["stamps"].attrs)
    assert st_attrs["channels"] == ztfref.CHANNELS
    assert "_ARRAY_DIMENSIONS" in st_attrs
    assert len(st_attrs["_ARRAY_DIMENSIONS"]) == 4


def test_array_metadata_on_disk(real_default):
    store = real_default.store
    assert ztfref.read_json(store / ".zgroup") == {"zarr_format": 2}
    st = ztfref.read_json(store / "stamps" / ".zarray")
    assert st["zarr_format"] == 2
    assert st["shape"] == [N_REAL, 3, 21, 21]
    assert st["chunks"] == [1000, 3, 21, 21]
    assert st["dtype"] == "<f4"
    assert st["compressor"] == {"id": "zstd", "level": 1}
    assert st["order"] == "C"
    cat = ztfref.read_json(store / "catalog" / ".zarray")
    assert cat["zarr_format"] == 2
    assert cat["shape"] == [N_REAL]
    assert cat["chunks"] == [1000]
    assert cat["compressor"] == {"id": "zstd", "level": 1}
    assert [list(f) for f in cat["dtype"]] == [[c.name, c.dtype] for c in ztfref.catalog_columns()]
    # packed: the item size is the sum of the field sizes
    assert np.dtype([tuple(f) for f in cat["dtype"]]).itemsize == sum(
        c.np_dtype.itemsize for c in ztfref.catalog_columns()
    )


def test_chunk_rows_option(builder, data_root, real_default):
    b = builder.build("real-chunks100-t1", [data_root.name], "--chunk-rows", "100", "--threads", "1",
                      cwd=data_root.parent)
    root = open_root(b.store)
    assert root["stamps"].chunks == (100, 3, 21, 21)
    assert root["catalog"].chunks == (100,)
    ref = open_root(real_default.store)
    assert np.array_equal(root["stamps"][:], ref["stamps"][:])
    assert root["catalog"][:].tobytes() == ref["catalog"][:].tobytes()
    # 529 rows in chunks of 100: chunk files 0..5 for each array
    assert sorted(p.name for p in (b.store / "catalog").iterdir() if not p.name.startswith(".")) == [
        str(i) for i in range(6)
    ]
    assert sorted(p.name for p in (b.store / "stamps").iterdir() if not p.name.startswith(".")) == [
        f"{i}.0.0.0" for i in range(6)
    ]


def test_dask_from_zarr(real_default):
    import dask.array as da

    path = str(real_default.store)
    d = da.from_zarr(path, component="stamps")
    assert d.shape == (N_REAL, 3, 21, 21)
    assert d.dtype == np.float32
    loaded = open_root(real_default.store)["stamps"][:]
    # some real cutouts hold float32-max pixels, so reduce in float64
    d64, l64 = d.astype(np.float64), loaded.astype(np.float64)
    np.testing.assert_allclose(d64.sum(axis=0).compute(), l64.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(d64.mean(axis=0).compute(), l64.mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(d.max(axis=0).compute(), loaded.max(axis=0))
    np.testing.assert_array_equal(d[::7, 2].compute(), loaded[::7, 2])


def test_dask_catalog(real_default):
    import dask.array as da

    d = da.from_zarr(str(real_default.store), component="catalog")
    cat = open_root(real_default.store)["catalog"][:]
    got = d.compute()
    assert got.dtype == cat.dtype
    assert got.tobytes() == cat.tobytes()


def test_zstd_level_option(builder, data_root, real_default):
    b = builder.build("kowalski-zstd9", [f"{data_root.name}/kowalski-20200202"], "--zstd-level", "9",
                      cwd=data_root.parent)
    for name in ("stamps", "catalog"):
        assert ztfref.read_json(b.store / name / ".zarray")["compressor"] == {"id": "zstd", "level": 9}
    root = open_root(b.store)
    ref = open_root(real_default.store)
    rows = np.nonzero(np.char.startswith(ref["catalog"][:]["source"].astype(str),
                                         f"{data_root.name}/kowalski-20200202/"))[0]
    assert len(rows) == 12
    assert np.array_equal(root["stamps"][:], ref["stamps"][:][rows])
    assert root["catalog"][:].tobytes() == ref["catalog"][:][rows].tobytes()


@pytest.mark.parametrize("size", ["20", "0", "65"])
def test_bad_stamp_size_is_refused(builder, data_root, size):
    b = builder.build(f"bad-size-{size}", [f"{data_root.name}/boom"], "--stamp-size", size,
                      cwd=data_root.parent, check=False)
    assert b.run.returncode != 0
    assert not b.store.exists()
