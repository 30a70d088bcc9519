"""Synthetic alerts from `ztf2zarr generate` decode with fastavro/astropy and build a matching store."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest

import ztfref
from checks import check_catalog, check_pixels
from conftest import open_root, run

COUNT = 40
SEED = 7
FIRST = 1_200_000_000_015_000_000
TARBALL = "ztf_public_20250101.tar.gz"


@pytest.fixture(scope="module")
def generated(binary, tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    loose = base / "loose"
    run(binary, ["generate", "-o", loose, "--count", COUNT, "--seed", SEED, "--first-candid", FIRST], base).check()
    again = base / "again"
    run(binary, ["generate", "-o", again, "--count", COUNT, "--seed", SEED, "--first-candid", FIRST], base).check()
    packed = base / "packed"
    run(binary, ["generate", "-o", packed, "--count", COUNT, "--seed", SEED, "--first-candid", FIRST,
                 "--tarball", TARBALL], base).check()
    return base, loose, again, packed


def test_generate_writes_readable_alerts(generated):
    base, loose, again, packed = generated
    files = ztfref.walk(loose)
    assert len(files) == COUNT
    candids = sorted(ztfref.alert_from_file(str(p)).candid for p in files)
    assert candids == list(range(FIRST, FIRST + COUNT))
    for p in files:
        alert = ztfref.alert_from_file(str(p))  # raises if fastavro/astropy cannot decode
        assert alert.record["schemavsn"] == "3.3"
        assert all(c.dtype == np.float32 and c.ndim == 2 for c in alert.cutouts)


def test_generate_is_deterministic(generated):
    base, loose, again, packed = generated
    a = {p.relative_to(loose): p.read_bytes() for p in ztfref.walk(loose)}
    b = {p.relative_to(again): p.read_bytes() for p in ztfref.walk(again)}
    assert a == b


def test_generate_tarball_holds_the_same_alerts(generated):
    base, loose, again, packed = generated
    assert (packed / TARBALL).is_file()
    assert not list(packed.rglob("*.avro"))
    with tarfile.open(packed / TARBALL) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        data = {m.name.rsplit("/", 1)[-1]: tar.extractfile(m).read() for m in members}
    assert len(members) == COUNT
    loose_data = {p.name: p.read_bytes() for p in ztfref.walk(loose)}
    assert data == loose_data


def test_synthetic_store_matches_reference(builder, generated):
    base, loose, again, packed = generated
    b = builder.build("synthetic", ["loose"], cwd=base)
    root = open_root(b.store)
    assert root["stamps"].shape == (COUNT, 3, 21, 21)
    assert ztfref.read_rejects(b.store) == []

    def locate(source):
        return (base / source).read_bytes()

    check_pixels(b.store, locate, size=21, keep_nan=False)
    expected_sources = [str(p.relative_to(base)) for p in ztfref.walk(loose)]
    check_catalog(b.store, locate, expected_sources=expected_sources)


def test_synthetic_store_63_keep_nan(builder, generated):
    base, loose, again, packed = generated
    b = builder.build("synthetic-63", ["loose"], "--stamp-size", "63", "--keep-nan", cwd=base)

    def locate(source):
        return (base / source).read_bytes()

    check_pixels(b.store, locate, size=63, keep_nan=True)


def test_synthetic_tarball_store_equals_loose(builder, generated):
    base, loose, again, packed = generated
    a = open_root(builder.build("synthetic", ["loose"], cwd=base).store)
    b = open_root(builder.build("synthetic-tar", [f"packed/{TARBALL}"], cwd=base).store)
    ca, cb = a["catalog"][:], b["catalog"][:]
    assert set(ca["candid"].tolist()) == set(cb["candid"].tolist())
    # compare row by candid (archive member order need not be sorted file order)
    ia, ib = np.argsort(ca["candid"]), np.argsort(cb["candid"])
    for name in ca.dtype.names:
        if name != "source":
            np.testing.assert_array_equal(ca[name][ia], cb[name][ib], err_msg=name)
    assert np.array_equal(a["stamps"][:][ia], b["stamps"][:][ib])
    assert all(str(s).startswith(f"packed/{TARBALL}:") for s in cb["source"])


def test_generate_4_02_with_measured_depths_fits_the_published_schema(binary, data_root, tmp_path):
    """`--schema 4.02 --history measured`: every record validates against ZTF's published 4.02
    schema (read independently of the generator's embedded copy), with fp_hists on exactly the
    exposures of prv_candidates, newest first."""
    import fastavro

    out = tmp_path / "deep"
    run(binary, ["generate", "-o", out, "--count", 60, "--seed", SEED, "--schema", "4.02", "--history", "measured"],
        tmp_path).check()
    folder = data_root / "schema" / "ztf-avro-alert" / "v4.02"
    published = fastavro.schema.load_schema_ordered(
        [str(folder / f"{name}.avsc") for name in ["cutout", "candidate", "prv_candidate", "fp_hist", "alert"]])
    lengths = []
    for path in ztfref.walk(out):
        with open(path, "rb") as f:
            records = list(fastavro.reader(f))
        assert len(records) == 1
        record = records[0]
        fastavro.validation.validate(record, published, raise_errors=True)
        assert record["schemavsn"] == "4.02"
        prv, fp = record["prv_candidates"], record["fp_hists"]
        assert [(e["pid"], e["jd"], e["fid"]) for e in fp] == [(e["pid"], e["jd"], e["fid"]) for e in reversed(prv)]
        assert all(0 < record["candidate"]["jd"] - e["jd"] <= 30 for e in fp)
        lengths.append(len(prv))
    assert len(lengths) == 60 and min(lengths) >= 4 and max(lengths) <= 196
