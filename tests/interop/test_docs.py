"""The Python examples in docs/training.md, docs/lightcurves.md, docs/store-format.md and docs/plots.md run as written, in order,
against the store their shell commands build from data-samples/ (with the ztf2zarr package,
dask, xarray and matplotlib installed), and the column tables of docs/lightcurves.md are
schemas/*.tsv's."""

from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

from conftest import REPO, run


def _python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)


def _shell_commands(doc: Path) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), re.S):
        commands += [line.split() for line in block.splitlines() if line.startswith("ztf2zarr ")]
    return commands


def _run_doc(doc: Path, binary, tmp_path) -> dict:
    """Run the doc's `ztf2zarr` shell commands in `tmp_path` (beside a link to data-samples/),
    then its Python blocks as one script there; the script's globals."""
    (tmp_path / "data-samples").symlink_to(REPO / "data-samples")
    for command in _shell_commands(doc):
        run(binary, command[1:], cwd=tmp_path).check()
    script = tmp_path / f"{doc.stem}_examples.py"
    script.write_text("\n\n".join(_python_blocks(doc)))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return runpy.run_path(str(script))
    finally:
        os.chdir(cwd)


def test_training_doc_examples_run(binary, tmp_path):
    doc = REPO / "docs" / "training.md"
    commands = _shell_commands(doc)
    assert [c[1] for c in commands] == ["build", "split"], commands
    blocks = _python_blocks(doc)
    assert len(blocks) >= 6
    assert any("ztf2zarr.batches(" in b for b in blocks) and any("xr.open_zarr(" in b for b in blocks)
    assert any("ztf2zarr.open_dataset(" in b for b in blocks)
    namespace = _run_doc(doc, binary, tmp_path)
    assert sorted(namespace["seen"]) == sorted(namespace["train"].tolist())
    assert namespace["ds"].sizes["alert"] == len(namespace["catalog"])
    assert namespace["sequence"].shape[1:] == (16, 5) and namespace["mask"].any()  # batches with history


def test_lightcurves_doc_examples_run(binary, tmp_path):
    doc = REPO / "docs" / "lightcurves.md"
    assert [c[1] for c in _shell_commands(doc)] == ["build"]
    namespace = _run_doc(doc, binary, tmp_path)
    curve, latest_df = namespace["curve"], namespace["latest_df"]
    every, curve_df = namespace["every_version"], namespace["curve_df"]
    assert len(curve) > 0 and (curve["objectId"] == namespace["object_id"]).all()
    # pandas' latest versions are the reader's, and every version is every version, row for row.
    for name in ("jd", "candid", "alert_candid"):
        assert list(latest_df[name]) == list(curve[name]) and list(curve_df[name]) == list(every[name]), name
    history, history_df = namespace["history"], namespace["history_df"]
    assert len(history) > 0 and list(history_df["jd"]) == list(history["jd"])
    assert list(history_df["alert_candid"]) == list(history["alert_candid"])
    assert len(namespace["histories"]) == 32 and namespace["histories"][0].dtype.names == ("jd", "fid", "magpsf")
    table = namespace["table"]  # xarray's
    assert list(table.columns) == list(namespace["lc"].columns("epochs")) and len(table) == len(namespace["epochs"])
    assert len(namespace["r_band_mags"]) == int((namespace["epochs"].fid == 2).sum())


def test_store_format_doc_examples_run(binary, tmp_path):
    doc = REPO / "docs" / "store-format.md"
    assert [c[1] for c in _shell_commands(doc)] == ["build", "split"]
    assert "train.zarr\")" not in doc.read_text(), "an example opens a store no command of the page makes"
    namespace = _run_doc(doc, binary, tmp_path)
    assert len(namespace["df"]) == 44 and len(namespace["y_train"]) == len(namespace["train"]) > 0
    assert namespace["x_clean"].shape[1:] == (3, 21, 21) and namespace["curve"]["jd"].is_monotonic_increasing


def test_plots_doc_examples_run(binary, tmp_path):
    doc = REPO / "docs" / "plots.md"
    assert [c[1] for c in _shell_commands(doc)] == ["build"]
    assert "](alert.png)" in doc.read_text() and (REPO / "docs" / "alert.png").is_file()
    namespace = _run_doc(doc, binary, tmp_path)
    assert len(namespace["fig"].axes) >= 4 and (tmp_path / "alert.png").stat().st_size > 10_000
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def _doc_columns(doc_text: str, heading: str) -> list[str]:
    section = doc_text.split(heading, 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \| `", section, re.M)


def _tsv_columns(name: str) -> list[str]:
    lines = (REPO / "schemas" / name).read_text().splitlines()
    return [line.split("\t")[0] for line in lines if line and not line.startswith("#")]


def test_lightcurves_doc_lists_every_column():
    text = (REPO / "docs" / "lightcurves.md").read_text()
    assert _doc_columns(text, "### `lightcurves/epochs`") == _tsv_columns("epochs.tsv")
    assert _doc_columns(text, "### `lightcurves/forced`") == _tsv_columns("forced.tsv")
