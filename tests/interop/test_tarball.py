"""A nightly .tar.gz gives the same store as the same alerts as loose files (except `source`)."""

from __future__ import annotations

import random
import tarfile

import numpy as np
import pytest

import ztfref
from checks import check_catalog, check_pixels
from conftest import open_root

ARCHIVE = "ztf_public_20200202.tar.gz"


def _pick(data_root):
    fink = sorted((data_root / "fink-alert-simulator-20181129").glob("*.avro"))
    edge = [p for p in fink if ztfref.alert_from_file(str(p)).cutouts[0].shape != (63, 63)]
    nan = [p for p in fink if p not in edge
           and any(np.isnan(c).any() for c in ztfref.alert_from_file(str(p)).cutouts)]
    plain = [p for p in fink if p not in edge and p not in nan]
    files = (
        sorted((data_root / "kowalski-20200202").glob("*.avro"))
        + edge[:3] + nan[:3] + plain[:5]
        + sorted((data_root / "boom").glob("*.avro"))
        + sorted((data_root / "fink-alert-schemas").glob("*.avro"))
        + sorted((data_root / "ampel" / "ztf_public_20180601").glob("*.avro"))[:2]
        + [data_root / "ampel" / "tests" / "schema_3.2.avro",
           data_root / "ztf-avro-alert" / "472263571115115000.avro",  # duplicate candid
           data_root / "ampel" / "tests" / "ZTF20abyfpze.avro",  # null cutouts
           sorted((data_root / "ampel" / "ipac-2016-jpeg-cutouts").glob("*.avro"))[0],
           sorted((data_root / "ampel" / "ztf_public_20180601-corrupt").glob("*.avro"))[0]]
    )
    random.Random(20200202).shuffle(files)  # archive order, not sorted order, must be kept
    names = [p.name for p in files]
    assert len(set(names)) == len(names)
    return files


@pytest.fixture(scope="module")
def pair(builder, data_root, tmp_path_factory):
    files = _pick(data_root)
    night = tmp_path_factory.mktemp("night")
    with tarfile.open(night / ARCHIVE, "w:gz") as tar:
        for p in files:
            tar.add(p, arcname=p.name)
    rel = [str(p.relative_to(data_root.parent)) for p in files]
    loose = builder.build("tar-loose", rel, cwd=data_root.parent)
    packed = builder.build("tar-packed", [ARCHIVE], cwd=night)
    return files, rel, loose, packed


def test_tarball_store_equals_loose_store(pair):
    files, rel, loose, packed = pair
    a = open_root(loose.store)
    b = open_root(packed.store)
    ca, cb = a["catalog"][:], b["catalog"][:]
    assert len(ca) == len(files) - 4  # duplicate, null cutouts, JPEG, corrupt
    assert len(cb) == len(ca)
    for name in ca.dtype.names:
        if name == "source":
            continue
        np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)
    assert np.array_equal(a["stamps"][:], b["stamps"][:])
    # stamps chunk files are byte-identical
    for f in sorted((loose.store / "stamps").iterdir()):
        assert f.read_bytes() == (packed.store / "stamps" / f.name).read_bytes(), f.name
    # group attrs agree, except the record of the build itself (its inputs are named differently)
    aa, ab = dict(a.attrs), dict(b.attrs)
    for attrs in (aa, ab):
        attrs["ztf2zarr"] = {k: v for k, v in attrs["ztf2zarr"].items() if k != "runs"}
    assert aa == ab


def test_tarball_sources_and_order(pair):
    files, rel, loose, packed = pair
    cl = open_root(loose.store)["catalog"][:]
    cp = open_root(packed.store)["catalog"][:]
    by_rel = dict(zip(rel, files))
    assert [str(s) for s in cp["source"]] == [f"{ARCHIVE}:{by_rel[str(s)].name}" for s in cl["source"]]
    # rows in archive order (== order given), the duplicate's first occurrence kept
    kept = []
    seen = set()
    for r, p in zip(rel, files):
        if ztfref.classify_file(p) is not None:
            continue
        c = ztfref.alert_from_file(str(p)).candid
        if c not in seen:
            seen.add(c)
            kept.append(r)
    assert [str(s) for s in cl["source"]] == kept


def test_tarball_rejects(pair):
    files, rel, loose, packed = pair
    rl = ztfref.read_rejects(loose.store)
    rp = ztfref.read_rejects(packed.store)
    assert len(rl) == len(rp) == 3
    name_of = {r: p.name for r, p in zip(rel, files)}
    assert sorted((f"{ARCHIVE}:{name_of[r['source']]}", r["reason"]) for r in rl) == sorted(
        (r["source"], r["reason"]) for r in rp
    )


def test_tarball_store_matches_reference(pair):
    files, rel, loose, packed = pair
    by_member = {f"{ARCHIVE}:{p.name}": p for p in files}

    def locate(source):
        return by_member[source].read_bytes()

    check_pixels(packed.store, locate, size=21, keep_nan=False)
    check_catalog(packed.store, locate)


def test_mixed_inputs_keep_first_occurrence(pair, builder, data_root):
    """Archive first, then a folder whose alerts are all in the archive: the folder's are duplicates."""
    files, rel, loose, packed = pair
    night = packed.run.cwd
    kowalski = data_root / "kowalski-20200202"
    b = builder.build("tar-then-folder", [ARCHIVE, str(kowalski)], cwd=night)
    cp = open_root(packed.store)["catalog"][:]
    cm = open_root(b.store)["catalog"][:]
    assert cm.tobytes() == cp.tobytes()
    assert len(ztfref.read_rejects(b.store)) == 3
