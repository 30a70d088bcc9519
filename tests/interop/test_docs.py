"""The Python examples in docs/training.md, docs/lightcurves.md, docs/store-format.md,
docs/plots.md and docs/rubin.md run as written, in order, against the store their shell commands build from
data-samples/ (with the ztf2zarr package, dask, xarray and matplotlib installed); the README's
quick start runs line by line, needing no package that `pip install .` does not install; and the
column tables of docs/lightcurves.md are schemas/*.tsv's."""

from __future__ import annotations

import ast
import os
import re
import runpy
import sys
import tomllib
from pathlib import Path

from conftest import REPO, run


def _python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)


def _shell_commands(doc: Path) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), re.S):
        # A shell comment is no argument: `ztf2zarr build … -o s.zarr   # why` runs without it.
        commands += [line.split("#", 1)[0].split() for line in block.splitlines() if line.startswith("ztf2zarr ")]
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


def test_rubin_doc_examples_run(binary, tmp_path):
    doc = REPO / "docs" / "rubin.md"
    assert [c[1] for c in _shell_commands(doc)] == ["generate", "build", "info", "split"]
    namespace = _run_doc(doc, binary, tmp_path)
    assert namespace["x"].shape[1:] == (3, 30, 30) and namespace["v"].shape == namespace["x"].shape
    assert namespace["sequence"].shape[2] == 4
    curve = namespace["curve"]
    assert len(curve) > 0 and (curve["diaObjectId"] == namespace["object_id"]).all()
    assert (curve["midpointMjdTai"][1:] >= curve["midpointMjdTai"][:-1]).all()
    assert namespace["ds"].sizes["alert"] == len(namespace["catalog"]) == 300
    assert namespace["kernels"].shape == (64, 3, 41, 41) and namespace["template_psf"].shape == namespace["template"].shape
    assert namespace["science"].shape == (41, 41)


def _quick_start() -> tuple[list[str], str]:
    """The shell lines (comments dropped) and the Python block of the README's quick start."""
    section = (REPO / "README.md").read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    shell = [line.split("#", 1)[0].strip() for kind, block in blocks if kind == "sh" for line in block.splitlines()]
    python = [block for kind, block in blocks if kind == "python"]
    assert len(python) == 1, f"README.md: the quick start has {len(python)} python blocks, not 1"
    return [line for line in shell if line], python[0]


def _top_level_imports(code: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_readme_quick_start_runs_as_pasted(binary, tmp_path):
    """Every shell line of the quick start is run (the release binary for target/release/ztf2zarr)
    or stood in for, in a fresh folder holding the repository's data-samples/: `cargo build
    --release` by the binary scripts/test built, the venv and `pip install .` by this interpreter,
    into which scripts/test installed the package as `pip install .` does. A line it does not know
    fails the test. Then the Python block runs there, and imports only what `pip install .` brings."""
    shell, python = _quick_start()
    assert shell[0] == "cargo build --release", shell
    (tmp_path / "data-samples").symlink_to(REPO / "data-samples")
    ran = []
    for line in shell:
        words = line.split()
        if line == "cargo build --release":
            assert binary.is_file() and binary.name == "ztf2zarr"
        elif words[0] == "target/release/ztf2zarr":
            run(binary, words[1:], cwd=tmp_path).check()
            ran.append(words[1])
        elif line == "python3 -m venv .venv-reader":
            assert sys.prefix != sys.base_prefix, "the tests run in a venv, which stands in for .venv-reader"
        elif line == ".venv-reader/bin/pip install .":
            import ztf2zarr

            assert Path(ztf2zarr.__file__).name == "__init__.py"
        else:
            raise AssertionError(f"README.md quick start: the test does not know how to run {line!r}")
    assert ran == ["build", "split"], ran
    assert "--labels" in shell[1] and "data-samples/labels.csv" in shell[1]

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    installed = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]} | {"ztf2zarr"}
    extra = _top_level_imports(python) - installed - set(sys.stdlib_module_names)
    assert not extra, f"README.md quick start imports {sorted(extra)}, which `pip install .` does not install"

    script = tmp_path / "quick_start.py"
    script.write_text(python)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace = runpy.run_path(str(script))
    finally:
        os.chdir(cwd)
    assert namespace["x"].shape == (16, 3, 21, 21) and len(namespace["y"]) == 16
    assert set(namespace["classes"].values()) == {"E", "LPV", "QSO", "RRL", "SNII", "SNIa", "YSO"}


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
