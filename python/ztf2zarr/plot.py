"""Figures of a ztf2zarr store: one alert's stamps beside its own light curve, and one object's
light curve. Each function returns a `matplotlib.figure.Figure` (made without pyplot, so no
window opens and no global state changes: `fig.savefig("alert.png")`, or show it in a notebook).

    >>> from ztf2zarr import plot
    >>> plot.alert("samples.zarr", 5).savefig("alert.png")
    >>> plot.curve("samples.zarr", "ZTF19acrtlko").savefig("curve.png")
    >>> plot.curve("rubin.zarr", 169645854020337671).savefig("curve.png")   # a Rubin diaObjectId

Stamps are drawn with a percentile stretch (0.5 to 99.5 % of the plane's valid pixels; the
difference symmetric about 0), missing pixels (NaN, ZTF's masked value, or the 0 a build stored
in their place) in magenta. Light curves: detections (`magpsf` ± `sigmapsf`) as filled circles,
upper limits (`diffmaglim`) as downward triangles, forced photometry converted to magnitudes
with its zero point (`magzpsci − 2.5 log10(forcediffimflux)`, where the flux is at least 3σ) as
open squares; g, r and i (fid 1, 2, 3) in green, red and orange. A Rubin store's light curves
are fluxes in nJy instead (its survey, `_survey.py`, says which): detections (`psfFlux` ±
`psfFluxErr` of the diaSources) as filled circles, forced photometry (`psfFlux` ± `psfFluxErr`
of the diaForcedSources, every epoch) as open squares, against `midpointMjdTai` (MJD, TAI),
coloured by band (u g r i z y: purple, green, red, orange, brown, black). Needs matplotlib:
`pip install ".[plot]"`.
"""

from __future__ import annotations

import numpy as np

from ._batches import MASKED_AT_OR_BELOW, _Normalizer
from ._lightcurves import GROUP, LightCurves
from ._store import Store, open_store
from ._survey import LSST, ZTF, Survey

#: Band colour and name of each ZTF filter id (Rubin's: `LSST.bands`, by band name).
BANDS = ZTF.bands
#: The colour of missing pixels.
MISSING_COLOUR = "magenta"
#: Short names of the `stamp_flags` values of a ZTF store, for titles (Rubin's: `LSST.flag_names`).
FLAG_NAMES = ZTF.flag_names
#: Forced photometry below this signal-to-noise ratio is not drawn.
FORCED_MIN_SNR = 3.0
_PLANES = ("science", "template", "difference")


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"ztf2zarr.plot needs matplotlib: pip install \".[plot]\" ({error})") from error
    return Figure


def missing_pixels(store: Store, stamps: np.ndarray, flags: int) -> np.ndarray:
    """Which pixels of one row's `stamps` (C, H, W), whose `stamp_flags` are `flags`, hold no
    data: NaN, ZTF's masked value, and, in a store that fills missing pixels with 0, an exact 0
    in a row whose flags say it has filled pixels."""
    stamps = np.asarray(stamps)
    missing = ~np.isfinite(stamps) | (stamps <= MASKED_AT_OR_BELOW)
    if int(flags) & _Normalizer(store, "zscore_mad").fill_bits:
        missing |= stamps == 0
    return missing


def stretch(plane: np.ndarray, valid: np.ndarray, symmetric: bool = False) -> tuple:
    """(low, high) display limits of `plane`: its 0.5 and 99.5 percentiles over `valid` pixels
    (`symmetric`: ± the 99.5 percentile of |value|); (0, 1) for a plane without valid pixels."""
    values = plane[valid]
    if values.size == 0:
        return 0.0, 1.0
    if symmetric:
        high = float(np.percentile(np.abs(values), 99.5)) or 1.0
        return -high, high
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (low, high) if high > low else (low - 1.0, low + 1.0)


def flag_text(flags: int, survey: Survey = ZTF) -> str:
    """`stamp_flags` as words: "flags 10: NaN pixels, masked pixels", or "no stamp flags"
    (the names of `survey`'s flags)."""
    flags = int(flags)
    if not flags:
        return "no stamp flags"
    return f"flags {flags}: " + ", ".join(name for value, name in survey.flag_names.items() if flags & value)


def _draw_stamps(fig, axes, store: Store, stamps: np.ndarray, flags: int):
    import matplotlib as mpl

    missing = missing_pixels(store, stamps, flags)
    for index, (ax, name) in enumerate(zip(axes, _PLANES)):
        plane = stamps[index].astype(np.float64)
        valid = ~missing[index]
        symmetric = name == "difference"
        low, high = stretch(plane, valid, symmetric)
        cmap = mpl.colormaps["RdBu_r" if symmetric else "gray"].with_extremes(bad=MISSING_COLOUR)
        image = ax.imshow(np.ma.masked_array(np.clip(plane, low, high), mask=~valid), cmap=cmap, vmin=low, vmax=high,
                          origin="lower", interpolation="nearest")
        ax.set_title(f"{name}" + (f" ({int((~valid).sum())} missing px)" if (~valid).any() else ""), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)


def _forced_magnitudes(forced: np.ndarray) -> tuple:
    """(mask, mag, err) of forced-photometry rows converted with their zero point, where the flux
    is at least FORCED_MIN_SNR σ above 0."""
    flux = forced["forcediffimflux"].astype(np.float64)
    error = forced["forcediffimfluxunc"].astype(np.float64)
    zero_point = forced["magzpsci"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.isfinite(flux) & np.isfinite(error) & np.isfinite(zero_point) & (error > 0) & (flux >= FORCED_MIN_SNR * error)
        mag = zero_point - 2.5 * np.log10(np.where(keep, flux, 1.0))
        err = 2.5 / np.log(10) * error / np.where(keep, flux, 1.0)
    return keep, mag, err


def _draw_fluxes(ax, epochs: np.ndarray, forced: np.ndarray | None, t0: float, xlabel: str, survey: Survey) -> int:
    """Rubin: detections and forced photometry as fluxes (nJy) with errors, time − t0, by band."""
    time, band = survey.time_column, survey.band_column
    drawn = 0
    for value, (colour, name) in survey.bands.items():
        detected = epochs[_fixed(epochs[band]) == value]
        if len(detected):
            ax.errorbar(detected[time] - t0, detected["psfFlux"], yerr=detected["psfFluxErr"], fmt="o", ms=5, color=colour,
                        capsize=2, label=f"{name} detection")
            drawn += len(detected)
        if forced is not None and len(forced):
            rows = forced[_fixed(forced[band]) == value]
            if len(rows):
                ax.errorbar(rows[time] - t0, rows["psfFlux"], yerr=rows["psfFluxErr"], fmt="s", ms=5, mfc="none",
                            color=colour, capsize=2, label=f"{name} forced")
                drawn += len(rows)
    ax.axhline(0.0, color="0.6", lw=0.6)
    return _finish_curve_axes(ax, xlabel, "difference flux (nJy)", drawn)


def _fixed(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    return values.astype(str) if values.dtype.kind in "OTS" else values


def _draw_curve(ax, epochs: np.ndarray, forced: np.ndarray | None, t0: float, xlabel: str, survey: Survey = ZTF):
    """Detections, upper limits and forced photometry on `ax`, time − t0: ZTF magnitudes
    downwards, Rubin fluxes in nJy (`_draw_fluxes`)."""
    if not survey.magnitudes:
        return _draw_fluxes(ax, epochs, forced, t0, xlabel, survey)
    drawn = 0
    for fid, (colour, band) in BANDS.items():
        band_rows = epochs[epochs["fid"] == fid]
        detected = band_rows[band_rows["kind"] == "detection"]
        limits = band_rows[(band_rows["kind"] == "upper_limit") & np.isfinite(band_rows["diffmaglim"])]
        if len(detected):
            ax.errorbar(detected["jd"] - t0, detected["magpsf"], yerr=detected["sigmapsf"], fmt="o", ms=5, color=colour,
                        capsize=2, label=f"{band} detection")
        if len(limits):
            ax.scatter(limits["jd"] - t0, limits["diffmaglim"], marker="v", s=30, color=colour, alpha=0.45,
                       label=f"{band} upper limit")
        drawn += len(detected) + len(limits)
        if forced is not None and len(forced):
            rows = forced[forced["fid"] == fid]
            keep, mag, err = _forced_magnitudes(rows)
            if keep.any():
                ax.errorbar(rows["jd"][keep] - t0, mag[keep], yerr=err[keep], fmt="s", ms=5, mfc="none", color=colour,
                            capsize=2, label=f"{band} forced (≥{FORCED_MIN_SNR:g}σ)")
                drawn += int(keep.sum())
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    return _finish_curve_axes(ax, xlabel, "magnitude", drawn)


def _finish_curve_axes(ax, xlabel: str, ylabel: str, drawn: int) -> int:
    """Label and grid a light-curve panel, with a legend, or "no epochs" when nothing was drawn."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no epochs", transform=ax.transAxes, ha="center", va="center")
    return drawn


_CURVE_COLUMNS = ("kind", "jd", "fid", "magpsf", "sigmapsf", "diffmaglim")
_FORCED_COLUMNS = ("jd", "fid", "forcediffimflux", "forcediffimfluxunc", "magzpsci")
#: (epochs, forced) columns each survey's light-curve plot reads.
_COLUMNS = {ZTF.name: (_CURVE_COLUMNS, _FORCED_COLUMNS),
            LSST.name: (("midpointMjdTai", "band", "psfFlux", "psfFluxErr"), ("midpointMjdTai", "band", "psfFlux", "psfFluxErr"))}


def alert(store, row: int, engine: str = "auto", storage_options: dict | None = None):
    """Catalog row `row`: its science, template and difference stamps (with its `stamp_flags`)
    and, beside them, the light curve its own packet carried (`LightCurves.history`: detections,
    upper limits and forced photometry up to the alert; Rubin: fluxes in nJy), time in days from
    the alert."""
    Figure = _matplotlib()
    opened = open_store(store, engine, storage_options)
    if not -opened.rows <= int(row) < opened.rows:
        raise IndexError(f"{opened.path}: row {row} is not in the store ({opened.rows} rows)")
    row = int(row) % opened.rows
    record = opened.catalog.rows(row, row + 1)[0]
    stamps = np.asarray(opened.stamps.rows(row, row + 1)[0])
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.9])
    stamp_axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
    survey = opened.survey
    _draw_stamps(fig, stamp_axes, opened, stamps, int(record["stamp_flags"]))
    curve_ax = fig.add_subplot(grid[0, 3])
    if opened.node(GROUP) is None:
        curve_ax.text(0.5, 0.5, "no light curves in this store", transform=curve_ax.transAxes, ha="center", va="center")
        curve_ax.set_axis_off()
    else:
        curves = LightCurves(opened)
        epoch_columns, forced_columns = _COLUMNS[survey.name]
        epochs = curves.history(row, columns=epoch_columns)
        forced = curves.history(row, table="forced", columns=forced_columns)
        _draw_curve(curve_ax, epochs, forced, float(record[survey.time_column]), "days from the alert", survey)
        curve_ax.axvline(0.0, color="0.4", lw=0.8, ls="--")
        curve_ax.set_title("the alert's own history", fontsize=9)
    label = str(record["label"]) if "label" in record.dtype.names and record["label"] else "unlabeled"
    fig.suptitle(f"{record[survey.object_column]}  {survey.id_column} {record[survey.id_column]}  row {row}  ({label})  —  "
                 f"{flag_text(record['stamp_flags'], survey)}", fontsize=10)
    return fig


def curve(store, object_id, engine: str = "auto", storage_options: dict | None = None, versions: str = "latest"):
    """The light curve of `object_id` (ZTF: an objectId; Rubin: a diaObjectId; every stored
    alert's epochs, `LightCurves.curve`, latest versions by default) with its forced photometry,
    time in MJD (Rubin: MJD TAI, fluxes in nJy)."""
    Figure = _matplotlib()
    curves = LightCurves(open_store(store, engine, storage_options))
    survey = curves.survey
    epoch_columns, forced_columns = _COLUMNS[survey.name]
    epochs = curves.curve(object_id, columns=epoch_columns, versions=versions)
    forced = curves.curve(object_id, table="forced", columns=forced_columns, versions=versions)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    _draw_curve(ax, epochs, forced, survey.mjd_offset, "MJD" if survey.magnitudes else "MJD (TAI)", survey)
    if survey.magnitudes:
        ax.set_title(f"{object_id}: {int((epochs['kind'] == 'detection').sum())} detections, "
                     f"{int((epochs['kind'] == 'upper_limit').sum())} upper limits, {len(forced)} forced epochs", fontsize=10)
    else:
        ax.set_title(f"{object_id}: {len(epochs)} detections, {len(forced)} forced epochs", fontsize=10)
    return fig
