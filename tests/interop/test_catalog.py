"""Every catalog value equals the fastavro decode of its alert; rows keep input order."""

from __future__ import annotations

import shutil

import numpy as np

import ztfref
from checks import check_catalog
from conftest import open_root


def _locator(data_root):
    return lambda source: (data_root.parent / source).read_bytes()


def test_catalog_values_default_build(real_default, data_root, real_expectation):
    expected_sources = [s for s, _ in real_expectation.rows]
    cat = check_catalog(real_default.store, _locator(data_root), expected_sources=expected_sources)
    assert len(cat) == 529


def test_catalog_values_stamp63_keep_nan(real_keepnan63, data_root, real_expectation):
    expected_sources = [s for s, _ in real_expectation.rows]
    check_catalog(real_keepnan63.store, _locator(data_root), stamp_size=63, keep_nan=True,
                  expected_sources=expected_sources)


def test_first_of_duplicate_candid_is_kept(real_default, real_expectation, data_root):
    """candid 472263571115115000 comes as schema 3.2 (ampel/tests, walked first) and 3.3."""
    cat = open_root(real_default.store)["catalog"][:]
    rows = np.nonzero(cat["candid"] == 472263571115115000)[0]
    assert len(rows) == 1
    row = cat[rows[0]]
    assert str(row["source"]).endswith("ampel/tests/schema_3.2.avro")
    assert str(row["schemavsn"]) == "3.2"
    assert np.isnan(row["drb"])  # 3.2 has no drb
    assert real_expectation.duplicates == [f"{data_root.name}/ztf-avro-alert/472263571115115000.avro"]


def test_missing_values_per_schema_generation(real_default, data_root):
    """Pre-3.x alerts (no schemavsn/publisher) get empty strings; only 4.x alerts have fp_hists."""
    cat = open_root(real_default.store)["catalog"][:]
    old = np.char.startswith(cat["source"].astype(str), f"{data_root.name}/ampel/ztf_public_20180601/")
    assert old.sum() == 10
    assert (cat["schemavsn"][old] == "").all()
    assert (cat["publisher"][old] == "").all()
    v4 = np.char.startswith(cat["schemavsn"].astype(str), "4.")
    assert v4.sum() >= 1
    assert (cat["n_fp_hists"][~v4] == np.iinfo(np.int32).min).all()
    assert (cat["n_fp_hists"][v4] >= 0).all()
    assert (cat["n_prv_candidates"] >= 0).all()  # never null in this data
    # columns only schema 1.3 had: every row missing (the 1.3 alerts are all rejected)
    for name in ("sgmag", "srmag", "simag", "szmag", "sgscore"):
        assert np.isnan(cat[name]).all(), name


def test_source_keeps_last_128_characters(builder, data_root, tmp_path):
    src = data_root / "kowalski-20200202" / "1127561442515015001.avro"
    deep = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 60)
    deep.mkdir(parents=True)
    target = deep / src.name
    shutil.copyfile(src, target)
    bad = deep / "ZTF20abyfpze.avro"  # null cutouts: rejected
    shutil.copyfile(data_root / "ampel" / "tests" / bad.name, bad)
    b = builder.build("long-source", [str(target), str(bad)], cwd=tmp_path)
    cat = open_root(b.store)["catalog"][:]
    assert len(cat) == 1
    assert len(str(target)) > 128
    assert str(cat["source"][0]) == str(target)[-128:]
    # rejects.jsonl names the input in full
    assert [r["source"] for r in ztfref.read_rejects(b.store)] == [str(bad)]


def test_file_inputs_keep_the_order_given(builder, data_root):
    """Explicit files are read in the order given, not sorted."""
    files = sorted((data_root / "kowalski-20200202").glob("*.avro"))[::-1]
    rel = [str(p.relative_to(data_root.parent)) for p in files]
    b = builder.build("kowalski-reversed", rel, cwd=data_root.parent)
    cat = open_root(b.store)["catalog"][:]
    assert [str(s) for s in cat["source"]] == rel
    expected = [ztfref.alert_from_file(str(p)).candid for p in files]
    assert cat["candid"].tolist() == expected
