"""`batches(…, normalize="zscore_mad")` on the real alerts: every stamp plane as
(x − median) / (1.4826 · MAD) over its valid pixels, missing ones (NaN, ZTF's masked value, a
clipped cutout's fill) 0, the same whichever missing-pixel policy the store was built with."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ztf2zarr
import ztfref
from conftest import open_root


@pytest.fixture(scope="module")
def real_raw(builder, data_root):
    """The real alerts with NaN and masked pixels stored as they are (pixel-exact cutouts)."""
    return builder.build("real-raw", [data_root.name], "--keep-nan", "--keep-masked", cwd=data_root.parent)


def _epoch(store, **options) -> dict:
    """One whole epoch, rows in store order."""
    got = list(ztf2zarr.batches(store, batch_size=100, seed=0, **options))
    rows = np.concatenate([b["row"] for b in got])
    order = np.argsort(rows)
    return {name: np.concatenate([b[name] for b in got])[order] for name in got[0]}


def _reference(raw: np.ndarray) -> np.ndarray:
    """The z-score of each plane of pixel-exact stamps, written with numpy's nanmedian."""
    x = raw.astype(np.float64)
    valid = np.isfinite(x) & (x > -1e30)
    values = np.where(valid, x, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN plane
        median = np.nanmedian(values, axis=(2, 3), keepdims=True)
        mad = np.nanmedian(np.abs(values - median), axis=(2, 3), keepdims=True)
    scale = np.where(mad > 0, 1.4826 * mad, 1.0)
    return np.where(valid, (x - median) / scale, 0)


def test_zscore_mad_on_real_stamps(real_default, real_raw):
    raw = open_root(real_raw.store)["stamps"][:]
    catalog = open_root(real_default.store)["catalog"][:]
    masked_rows = (catalog["stamp_flags"] & ztfref.FLAG_MASKED) != 0
    assert masked_rows.sum() == 2 and (raw[masked_rows] <= -1e30).any(), "the real alerts with masked pixels"
    expected = _reference(raw)
    for store in (real_default, real_raw):
        epoch = _epoch(store.store, normalize="zscore_mad")
        x = epoch["stamps"]
        assert x.dtype == np.float32 and x.shape == raw.shape
        assert np.isfinite(x).all() and np.abs(x).max() < 1e6
        # The default store holds 0 where the raw one holds NaN or -3.4e38: same z-scores.
        np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-4)
        valid = np.isfinite(raw) & (raw > -1e30)
        assert (x[~valid] == 0).all()
        assert set(epoch) == {"stamps", "row", "label_code"}, "stamp_flags read for it is not handed out"
    # Per plane, over its valid pixels: median 0 and MAD 1 / 1.4826.
    for i in np.flatnonzero(masked_rows).tolist() + [0, 100, 528]:
        for channel in range(3):
            plane, ok = x[i, channel], valid[i, channel]
            assert abs(np.median(plane[ok])) < 1e-5, (i, channel)
            assert abs(np.median(np.abs(plane[ok])) * 1.4826 - 1) < 1e-4, (i, channel)


def test_the_default_is_the_stored_stamps(real_default):
    stored = open_root(real_default.store)["stamps"][:]
    for options in ({}, {"normalize": "none"}):
        np.testing.assert_array_equal(_epoch(real_default.store, **options)["stamps"], stored)
    with pytest.raises(ValueError, match="normalize must be one of"):
        next(ztf2zarr.batches(real_default.store, normalize="zscore"))


def test_zscore_mad_edge_cases():
    stamps = np.zeros((1, 3, 3, 3), np.float32)
    stamps[0, 0] = np.nan  # nothing valid: all 0
    stamps[0, 1] = 5.0  # constant: MAD 0, only centred
    stamps[0, 1, 0, 0] = 7.0
    stamps[0, 2] = np.arange(9).reshape(3, 3)
    stamps[0, 2, 2, 2] = np.float32(-3.4028235e38)
    missing = np.zeros_like(stamps, bool)
    missing[0, 2, 0, 0] = True
    out = ztf2zarr.zscore_mad(stamps, missing)
    assert (out[0, 0] == 0).all()
    assert out[0, 1, 0, 0] == 2 and (out[0, 1].ravel()[1:] == 0).all()
    # valid: 1..7 (0 is missing, 8 masked): median 4, MAD 2
    assert out[0, 2, 0, 0] == 0 and out[0, 2, 2, 2] == 0
    np.testing.assert_allclose(out[0, 2].ravel()[1:8], (np.arange(1, 8) - 4) / (1.4826 * 2), rtol=1e-6)
