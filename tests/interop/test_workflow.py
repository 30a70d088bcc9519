"""Appending, labelling and splitting leave a store that zarr-python (2.18 and 3) reads as documented."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import zarr

import ztfref
from conftest import open_root, run

PARTS = [
    ["kowalski-20200202"],
    ["boom", "fink-alert-schemas", "ampel/tests"],  # ampel/tests: one good, one null-cutout reject
    ["ztf-avro-alert", "ampel/ipac-2016-jpeg-cutouts-corrupt"],  # a duplicate candid, 2 rejects
]


def _inputs(data_root, names):
    return [f"{data_root.name}/{n}" for n in names]


@pytest.fixture(scope="module")
def appended(builder, binary, data_root, tmp_path_factory):
    """The same inputs built at once and in three appends (small chunks, so appends fill partial chunks)."""
    once = builder.build("once", [i for p in PARTS for i in _inputs(data_root, p)], "--chunk-rows", "7",
                         cwd=data_root.parent)
    store = tmp_path_factory.mktemp("append") / "appended.zarr"
    for part in PARTS:
        run(binary, ["build", *_inputs(data_root, part), "-o", store, "--no-progress", "--chunk-rows", "7"],
            data_root.parent).check()
    return once.store, store


def test_append_equals_one_build(appended):
    once, app = appended
    a, b = open_root(once), open_root(app)
    assert a["catalog"].shape == b["catalog"].shape == (12 + 1 + 3 + 1 + 3,)
    assert a["catalog"][:].tobytes() == b["catalog"][:].tobytes()
    assert np.array_equal(a["stamps"][:], b["stamps"][:])
    for name in ("stamps", "catalog"):
        for f in sorted((once / name).iterdir()):
            assert f.read_bytes() == (app / name / f.name).read_bytes(), f"{name}/{f.name}"
    assert [r["source"] for r in ztfref.read_rejects(once)] == [r["source"] for r in ztfref.read_rejects(app)]
    assert len(ztfref.read_rejects(app)) == 3


def test_appended_store_opens_consolidated(appended):
    once, app = appended
    root = zarr.open_consolidated(str(app), mode="r")
    assert root["stamps"].shape[0] == root["catalog"].shape[0] == 20


def test_append_skips_candids_already_in_the_store(binary, data_root, tmp_path):
    store = tmp_path / "s.zarr"
    kowalski = _inputs(data_root, ["kowalski-20200202"])
    run(binary, ["build", *kowalski, "-o", store, "--no-progress"], data_root.parent).check()
    before = {p.name: p.read_bytes() for p in (store / "catalog").iterdir()}
    run(binary, ["build", *kowalski, "-o", store, "--no-progress"], data_root.parent).check()
    assert open_root(store)["catalog"].shape == (12,)
    assert {p.name: p.read_bytes() for p in (store / "catalog").iterdir()} == before


@pytest.fixture(scope="module")
def labelled(binary, data_root, tmp_path_factory):
    """The kowalski + fink folders, labelled from a CSV made here, then split."""
    work = tmp_path_factory.mktemp("labels")
    store = work / "l.zarr"
    run(binary, ["build", *_inputs(data_root, ["kowalski-20200202", "fink-alert-simulator-20181129"]),
                 "-o", store, "--no-progress"], data_root.parent).check()
    object_ids = sorted(set(open_root(store)["catalog"][:]["objectId"].astype(str).tolist()))
    classes = ["SNIa", "QSO", "AGN", "YSO"]
    # every 5th object is left out of the CSV (unlabeled); one CSV row names an object not in the store
    truth = {oid: classes[i % 4] for i, oid in enumerate(object_ids) if i % 5 != 4}
    with open(work / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["oid", "predicted_class", "probability"])
        for oid, cls in truth.items():
            w.writerow([oid, cls, "0.5"])
        w.writerow(["ZTF99zzzzzzz", "RRL", "0.9"])
    run(binary, ["label", store, "--labels", "labels.csv"], work).check()
    run(binary, ["split", store, "--seed", "7"], work).check()
    return store, truth


def test_labels_join_on_object_id(labelled):
    store, truth = labelled
    root = open_root(store)
    cat = root["catalog"][:]
    meta = dict(root.attrs)["ztf2zarr"]["labels"]
    code_of = {name: int(code) for code, name in meta["classes"].items()}
    # without --classes every class of the CSV keeps its name, and codes follow sorted names
    # (the table depends on the CSV only, so RRL, whose object is not in the store, has a code)
    by_code = [name for _, name in sorted((int(c), n) for c, n in meta["classes"].items())]
    assert by_code == sorted(set(truth.values()) | {"RRL"})
    assert sorted(code_of.values()) == list(range(len(code_of)))
    for oid, label, code in zip(cat["objectId"], cat["label"], cat["label_code"]):
        expected = truth.get(str(oid), "")
        assert str(label) == expected, oid
        assert int(code) == (code_of[expected] if expected else -1), oid


def test_labelling_changes_only_label_columns(labelled, builder, data_root):
    store, truth = labelled
    plain = builder.build("kowalski-fink", _inputs(data_root, ["kowalski-20200202", "fink-alert-simulator-20181129"]),
                          cwd=data_root.parent)
    a, b = open_root(plain.store), open_root(store)
    ca, cb = a["catalog"][:], b["catalog"][:]
    for name in ca.dtype.names:
        if name not in ztfref.UNLABELED_COLUMNS:
            np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)
    assert np.array_equal(a["stamps"][:], b["stamps"][:])


def test_splits_partition_rows_by_object(labelled):
    store, truth = labelled
    root = zarr.open_consolidated(str(store), mode="r")
    n = root["catalog"].shape[0]
    oids = root["catalog"][:]["objectId"].astype(str)
    parts = {name: root[f"splits/{name}"][:] for name in ("train", "val", "test")}
    for name, idx in parts.items():
        assert idx.dtype == np.int64, name
        assert len(np.unique(idx)) == len(idx), name
        assert ((idx >= 0) & (idx < n)).all(), name
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything.tolist()) == list(range(n))  # fractions add up to 1: every row is placed
    owner = {}
    for name, idx in parts.items():
        for oid in set(oids[idx].tolist()):
            assert owner.setdefault(oid, name) == name, f"{oid} in {owner[oid]} and {name}"
    assert len(parts["train"]) > len(parts["val"])
    # readable through dask too
    import dask.array as da

    assert np.array_equal(da.from_zarr(str(store), component="splits/train").compute(), parts["train"])


def test_split_is_deterministic(labelled, binary, tmp_path):
    store, truth = labelled
    before = {n: open_root(store)[f"splits/{n}"][:] for n in ("train", "val", "test")}
    run(binary, ["split", store, "--seed", "7"], tmp_path).check()
    after = {n: open_root(store)[f"splits/{n}"][:] for n in ("train", "val", "test")}
    for n in before:
        assert np.array_equal(before[n], after[n]), n
