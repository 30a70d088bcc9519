"""Render the figure of docs/plots.md: `ztf2zarr.plot.alert` on a row of the sample store.

    ztf2zarr build data-samples -o samples.zarr --labels data-samples/labels.csv
    python scripts/docs_figure.py samples.zarr docs/alert.png

Row 3 of the sample store has NaN pixels (stamp_flags 2), so the figure shows how missing pixels
are drawn. Needs the ztf2zarr package with matplotlib (`pip install ".[plot]"`).
"""

from __future__ import annotations

import sys

from ztf2zarr import plot

ROW = 3
DPI = 80


def render(store, out) -> None:
    plot.alert(store, ROW).savefig(out, dpi=DPI)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} STORE OUT.png")
    render(sys.argv[1], sys.argv[2])
