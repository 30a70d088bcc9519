"""`ztf2zarr.plot`: an alert's stamps (percentile stretch, missing pixels in their own colour)
beside its own light curve (detections, upper limits, forced photometry in magnitudes), one
object's curve, the figure of docs/plots.md rendered (Agg) and not blank, and a clear error
without matplotlib."""

from __future__ import annotations

import runpy
import sys

import matplotlib.image
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

import ztf2zarr
from ztf2zarr import plot
from conftest import REPO, open_root, run

MAGENTA = np.array([1.0, 0.0, 1.0])


@pytest.fixture(scope="module")
def samples(binary, tmp_path_factory):
    """The sample store, labelled, as docs/plots.md builds it."""
    work = tmp_path_factory.mktemp("plot")
    (work / "data-samples").symlink_to(REPO / "data-samples")
    run(binary, ["build", "data-samples", "-o", "samples.zarr", "--labels", "data-samples/labels.csv", "--no-progress"],
        work).check()
    return work / "samples.zarr"


@pytest.fixture(scope="module")
def forced(binary, tmp_path_factory):
    """Schema 4.02 alerts with measured history lengths: forced photometry in every packet."""
    work = tmp_path_factory.mktemp("plot-forced")
    run(binary, ["generate", "-o", work / "in", "--count", 12, "--schema", "4.02", "--history", "measured"], work).check()
    store = work / "forced.zarr"
    run(binary, ["build", work / "in", "-o", store, "--no-progress"], work).check()
    return store


def _curve_axes(fig: Figure):
    return next(ax for ax in fig.axes if ax.get_xlabel() in ("days from the alert", "MJD"))


def _drawn(ax) -> dict:
    """label → number of points drawn under it (error bars and scatter markers)."""
    counts = {}
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            counts[container.get_label()] = len(container.lines[0].get_xdata())
    for collection in ax.collections:
        if isinstance(collection, PathCollection):
            counts[collection.get_label()] = len(collection.get_offsets())
    return counts


def _png_pixels(path) -> np.ndarray:
    return matplotlib.image.imread(str(path))[..., :3]


def test_docs_figure_renders_and_is_not_blank(samples, tmp_path):
    script = runpy.run_path(str(REPO / "scripts" / "docs_figure.py"))
    out = tmp_path / "alert.png"
    script["render"](samples, out)
    pixels = _png_pixels(out)
    assert pixels.std() > 0.1, f"{out}: nearly uniform (std {pixels.std():.3f})"
    colours = np.unique((pixels * 255).round().astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200, f"{out}: only {len(colours)} distinct colours"
    assert (np.abs(pixels - MAGENTA).max(axis=-1) < 0.05).sum() > 100, "the row's NaN pixels are not drawn in magenta"
    committed = REPO / "docs" / "alert.png"
    assert committed.stat().st_size < 150_000, f"{committed}: {committed.stat().st_size} bytes"
    assert _png_pixels(committed).shape == pixels.shape, f"{committed} is not what scripts/docs_figure.py makes now"


def test_alert_draws_stamps_with_missing_pixels_masked_and_its_own_history(samples):
    row = 3
    catalog = open_root(samples)["catalog"][:]
    fig = plot.alert(samples, row)
    assert isinstance(fig, Figure)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert [ax.get_title().split(" ")[0] for ax in fig.axes if ax.images] == ["science", "template", "difference"]
    stamps = open_root(samples)["stamps"][row]
    assert catalog["stamp_flags"][row] & 2, "row 3 of the samples has NaN pixels (stored as 0)"
    for image, plane in zip(images, stamps):
        np.testing.assert_array_equal(np.ma.getmaskarray(image.get_array()), plane == 0)
    assert np.ma.getmaskarray(images[1].get_array()).sum() > 0
    low, high = images[0].get_clim()
    assert np.percentile(stamps[0], 0.5) == pytest.approx(low) and high == pytest.approx(np.percentile(stamps[0], 99.5))
    assert images[2].get_clim()[0] == -images[2].get_clim()[1], "the difference is not stretched symmetrically"
    assert "flags 2: NaN pixels" in fig._suptitle.get_text() and catalog["objectId"][row] in fig._suptitle.get_text()

    history = ztf2zarr.history(samples, row, columns=["kind", "fid", "diffmaglim"])
    ax = _curve_axes(fig)
    drawn = _drawn(ax)
    for fid, band in ((1, "g"), (2, "r"), (3, "i")):
        mine = history[history["fid"] == fid]
        assert drawn.get(f"{band} detection", 0) == int((mine["kind"] == "detection").sum()), band
        limits = (mine["kind"] == "upper_limit") & np.isfinite(mine["diffmaglim"])
        assert drawn.get(f"{band} upper limit", 0) == int(limits.sum()), band
    assert sum(drawn.values()) == len(history) > 0 and ax.yaxis_inverted()


def test_forced_photometry_is_drawn_in_magnitudes_from_its_zero_point(forced):
    fig = plot.alert(forced, 0)
    rows = ztf2zarr.history(forced, 0, table="forced")
    flux, error = rows["forcediffimflux"].astype(float), rows["forcediffimfluxunc"].astype(float)
    significant = np.isfinite(flux) & (error > 0) & (flux >= 3 * error)
    assert significant.any(), "the generated alert has no significant forced flux"
    ax = _curve_axes(fig)
    points = {c.get_label(): c.lines[0] for c in ax.containers if "forced" in c.get_label()}
    assert sum(len(line.get_xdata()) for line in points.values()) == int(significant.sum())
    expected = np.sort(rows["magzpsci"][significant] - 2.5 * np.log10(flux[significant]))
    got = np.sort(np.concatenate([line.get_ydata() for line in points.values()]))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_curve_draws_one_objects_light_curve(samples, tmp_path):
    object_id = "ZTF19acrtlko"
    fig = plot.curve(samples, object_id)
    expected = ztf2zarr.curve(samples, object_id, columns=["kind"])
    ax = _curve_axes(fig)
    assert sum(_drawn(ax).values()) == len(expected) > 0
    assert ax.get_title().startswith(f"{object_id}: {int((expected['kind'] == 'detection').sum())} detections")
    fig.savefig(tmp_path / "curve.png")
    assert _png_pixels(tmp_path / "curve.png").std() > 0.05
    with pytest.raises(KeyError, match="no object 'ZTF00nothere'"):
        plot.curve(samples, "ZTF00nothere")
    with pytest.raises(IndexError, match="row 44 is not in the store"):
        plot.alert(samples, 44)


def test_without_matplotlib_the_error_says_how_to_install_it(samples, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "\.\[plot\]"'):
        plot.alert(samples, 0)
