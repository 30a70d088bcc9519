"""The Python examples in docs/training.md run as written, in order, against the store its
shell commands build from data-samples/ (with the ztf2zarr package and xarray installed)."""

from __future__ import annotations

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


def test_training_doc_examples_run(binary, tmp_path):
    doc = REPO / "docs" / "training.md"
    commands = _shell_commands(doc)
    assert [c[1] for c in commands] == ["build", "split"], commands
    (tmp_path / "data-samples").symlink_to(REPO / "data-samples")
    for command in commands:
        run(binary, command[1:], cwd=tmp_path).check()
    blocks = _python_blocks(doc)
    assert len(blocks) >= 6
    assert any("ztf2zarr.batches(" in b for b in blocks) and any("xr.open_zarr(" in b for b in blocks)
    script = tmp_path / "training_examples.py"
    script.write_text("\n\n".join(blocks))
    import os
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace = runpy.run_path(str(script))
    finally:
        os.chdir(cwd)
    assert sorted(namespace["seen"]) == sorted(namespace["train"].tolist())
    assert namespace["ds"].sizes["alert"] == len(namespace["catalog"])
