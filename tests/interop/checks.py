"""Store-vs-reference comparisons shared by several test files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import ztfref
from conftest import open_root


def check_pixels(store: Path, locate, size: int, keep_nan: bool, keep_masked: bool = False) -> int:
    """Compare every row's stamps (and flags) with the reference decode of its input.

    locate(source) -> bytes of the alert named by the row's `source`. Returns the row count."""
    root = open_root(store)
    stamps = root["stamps"][:]
    catalog = root["catalog"][:]
    assert stamps.shape == (len(catalog), 3, size, size)
    problems = []
    for i, (source, flags) in enumerate(zip(catalog["source"], catalog["stamp_flags"])):
        alert = ztfref.parse_alert(locate(str(source)))
        exp = ztfref.expected_stamp(alert, size, keep_nan, keep_masked)
        if int(flags) != exp.flags:
            problems.append(f"row {i} {source}: stamp_flags {int(flags)} != expected {exp.flags}")
        got = stamps[i]
        if keep_nan:
            ok = np.array_equal(got, exp.pixels, equal_nan=True)
        else:
            ok = np.array_equal(got, exp.pixels) and not np.isnan(got).any()
        if not ok:
            bad = ~((got == exp.pixels) | (np.isnan(got) & np.isnan(exp.pixels)))
            ch, y, x = np.argwhere(bad)[0]
            problems.append(
                f"row {i} {source}: {int(bad.sum())} pixels differ, first at channel {ch} (y={y}, x={x}): "
                f"store {got[ch, y, x]!r} vs reference {exp.pixels[ch, y, x]!r}; "
                f"cutout shapes {[c.shape for c in alert.cutouts]}"
            )
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])
    return len(catalog)


def check_catalog(store: Path, locate, stamp_size: int = 21, keep_nan: bool = False,
                  expected_sources=None) -> np.ndarray:
    """Every row and column equals the fastavro decode of the row's input (missing rules applied)."""
    root = open_root(store)
    catalog = root["catalog"][:]
    assert catalog.dtype == ztfref.catalog_dtype()
    sources = [str(s) for s in catalog["source"]]
    if expected_sources is not None:
        assert sources == list(expected_sources)
    rows = []
    for source in sources:
        alert = ztfref.parse_alert(locate(source))
        flags = ztfref.expected_stamp(alert, stamp_size, keep_nan).flags
        rows.append(ztfref.expected_row(alert, source, flags))
    expected = ztfref.expected_catalog(rows)
    problems = []
    for col in ztfref.catalog_columns():
        for i in ztfref.field_mismatches(catalog, expected, col.name):
            problems.append(
                f"row {i} ({sources[i]}) column {col.name} ({col.source}): "
                f"store {catalog[col.name][i]!r} vs expected {expected[col.name][i]!r}"
            )
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:40])
    assert len(set(catalog["candid"].tolist())) == len(catalog), "candid not unique"
    return catalog
