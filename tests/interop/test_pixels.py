"""Stamps are pixel-exact against fastavro + astropy and the stamp rule (crop, edge frame, NaN and
masked-pixel policy)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ztfref
from checks import check_pixels
from conftest import open_root


def _locator(data_root):
    return lambda source: (data_root.parent / source).read_bytes()


def test_pixels_default_build(real_default, data_root):
    n = check_pixels(real_default.store, _locator(data_root), size=21, keep_nan=False)
    assert n == 529


def test_pixels_stamp63_keep_nan(real_keepnan63, data_root):
    store = real_keepnan63.store
    root = open_root(store)
    assert root["stamps"].shape == (529, 3, 63, 63)
    meta = dict(root.attrs)["ztf2zarr"]
    assert meta["stamp_size"] == 63
    assert meta["nan_policy"] == "keep"
    n = check_pixels(store, _locator(data_root), size=63, keep_nan=True)
    assert n == 529


def test_edge_cutouts_are_flagged_and_placed(real_default, real_keepnan63, data_root):
    """The 7 fink edge alerts: flag value 1 set, nowhere else; the 63 frame keeps the padding."""
    edge_sources = set()
    for path in sorted((data_root / "fink-alert-simulator-20181129").glob("*.avro")):
        alert = ztfref.alert_from_file(str(path))
        if any(c.shape != (63, 63) for c in alert.cutouts):
            edge_sources.add(str(path.relative_to(data_root.parent)))
    assert len(edge_sources) == 7

    cat = open_root(real_default.store)["catalog"][:]
    flagged = {str(s) for s, f in zip(cat["source"], cat["stamp_flags"]) if f & ztfref.FLAG_EDGE}
    assert flagged == edge_sources
    assert not (cat["stamp_flags"] & ztfref.FLAG_GUESSED).any()

    # In the 63 keep-nan build the part of the frame the cutout does not cover is NaN.
    root63 = open_root(real_keepnan63.store)
    cat63 = root63["catalog"][:]
    st63 = root63["stamps"]
    for i, s in enumerate(cat63["source"]):
        if str(s) not in edge_sources:
            continue
        alert = ztfref.alert_from_file(str(data_root.parent / str(s)))
        h, w = alert.cutouts[0].shape
        stamp = st63[i]
        padded = np.isnan(stamp).all(axis=0)
        assert padded.sum() >= 63 * 63 - h * w, (str(s), h, w)


def test_nan_flag_and_zero_policy(real_default):
    """Flag value 2 is set on some real rows (NaN pixels exist in the fink cutouts) and the
    default build stores no NaN at all."""
    root = open_root(real_default.store)
    cat = root["catalog"][:]
    stamps = root["stamps"][:]
    assert not np.isnan(stamps).any()
    assert (cat["stamp_flags"] & ztfref.FLAG_NAN).any()


def _masked_rows(data_root, size: int) -> set:
    """Sources of the real alerts with a masked pixel inside their central size x size crop."""
    o = (ztfref.FRAME - size) // 2
    found = set()
    for path in sorted((data_root / "fink-alert-simulator-20181129").glob("*.avro")):
        alert = ztfref.alert_from_file(str(path))
        if any((c[o : o + size, o : o + size] <= ztfref.MASKED_AT_OR_BELOW).any() for c in alert.cutouts):
            found.add(str(path.relative_to(data_root.parent)))
    return found


def test_masked_pixels_are_missing_by_default_and_flagged(real_default, real_keepnan63, data_root):
    """ZTF's masked value (-3.4e38) reaches no default stamp: 0 in the default build, NaN with
    --keep-nan; flag value 8 marks exactly the rows that had one (2 alerts in the 21x21 crop,
    5 in the whole 63x63 cutout)."""
    for build, size, missing in ((real_default, 21, lambda x: x == 0), (real_keepnan63, 63, np.isnan)):
        root = open_root(build.store)
        stamps, cat = root["stamps"][:], root["catalog"][:]
        assert not (stamps <= ztfref.MASKED_AT_OR_BELOW).any()
        flagged = {str(s) for s, f in zip(cat["source"], cat["stamp_flags"]) if f & ztfref.FLAG_MASKED}
        assert flagged == _masked_rows(data_root, size) and len(flagged) == {21: 2, 63: 5}[size]
        for i, source in enumerate(cat["source"]):
            if str(source) in flagged:
                raw = ztfref.expected_stamp(ztfref.alert_from_file(str(data_root.parent / str(source))), size, True, True)
                at = raw.pixels <= ztfref.MASKED_AT_OR_BELOW
                assert at.any() and missing(stamps[i][at]).all()
        assert dict(root.attrs)["ztf2zarr"]["masked_policy"] == "missing"


def test_pixels_keep_masked(builder, data_root):
    """--keep-masked stores the masked value as it is, pixel-exact with astropy."""
    b = builder.build("real-keepmasked", [data_root.name], "--keep-masked", cwd=data_root.parent)
    root = open_root(b.store)
    assert dict(root.attrs)["ztf2zarr"]["masked_policy"] == "keep"
    assert int((root["stamps"][:] == np.float32(-3.4028235e38)).sum()) == 33 + 36
    assert check_pixels(b.store, _locator(data_root), size=21, keep_nan=False, keep_masked=True) == 529


# ----------------------------------------------------------------------------------------------
# Crafted edge cutouts: the real and synthetic edge alerts are all clipped on the high side, so
# low-side clipping, both axes clipped, and missing positions are made here from a real alert.

CRAFT_BASE = "fink-alert-simulator-20181129/697252380415010006.avro"
# name: (rows slice, cols slice, xpos, ypos, expected flags)
CRAFTS = {
    "low-x": (slice(None), slice(10, None), 20.0, 1500.0, 1),
    "low-y": (slice(15, None), slice(None), 900.0, 30.0, 1),
    "high-x-low-y": (slice(5, None), slice(None, 50), 3060.0, 10.0, 1),
    "low-x-high-y": (slice(None, 55), slice(20, None), 12.0, 3070.0, 1),
    "x-missing": (slice(None), slice(None, 40), None, 1200.0, 1 | 4),
    "y-nan": (slice(None, 44), slice(None), 700.0, float("nan"), 1 | 4),
    "full-missing-pos": (slice(None), slice(None), None, None, 0),
}


def _fits_gz(img: np.ndarray) -> bytes:
    import gzip
    import io

    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.ascontiguousarray(img, dtype=">f4")).writeto(buf)
    return gzip.compress(buf.getvalue(), mtime=0)


@pytest.fixture(scope="module")
def crafted(data_root, tmp_path_factory):
    schema, base = ztfref.read_with_schema(data_root / CRAFT_BASE)
    folder = tmp_path_factory.mktemp("crafted")
    out = folder / "alerts"
    out.mkdir()
    expected_flags = {}
    for k, (name, (rows, cols, xpos, ypos, flags)) in enumerate(CRAFTS.items()):
        rec = copy.deepcopy(base)
        rec["candid"] = base["candid"] + 1 + k
        rec["candidate"]["candid"] = rec["candid"]
        rec["candidate"]["xpos"] = xpos
        rec["candidate"]["ypos"] = ypos
        for cut in ztfref.CUTOUTS:
            img = ztfref.decode_cutout(base[cut]["stampData"])
            if name == "low-x":  # put NaN in the kept part so flag 2 is exercised on an edge stamp
                img = img.copy()
                img[30, 30] = np.nan
                flags |= 2
            rec[cut]["stampData"] = _fits_gz(img[rows, cols])
        path = out / f"{k}-{name}.avro"
        ztfref.write_alert(path, schema, rec)
        expected_flags[str(path.relative_to(folder))] = flags
    return folder, expected_flags


@pytest.mark.parametrize("size,keep_nan", [(21, False), (63, True), (41, False)])
def test_crafted_edge_placement(builder, crafted, size, keep_nan):
    folder, expected_flags = crafted
    opts = ["--stamp-size", str(size)] + (["--keep-nan"] if keep_nan else [])
    b = builder.build(f"crafted-{size}-{keep_nan}", ["alerts"], *opts, cwd=folder)
    cat = open_root(b.store)["catalog"][:]
    assert {str(s): int(f) for s, f in zip(cat["source"], cat["stamp_flags"])} == expected_flags
    check_pixels(b.store, lambda s: (folder / s).read_bytes(), size=size, keep_nan=keep_nan)
