"""Builds do not depend on the thread count: every file of the store is byte-identical."""

from __future__ import annotations

import time
from pathlib import Path


def _files(store: Path) -> dict:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _assert_identical(a: Path, b: Path):
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    differ = [name for name in fa if fa[name] != fb[name]]
    assert not differ, f"files differ between {a.name} and {b.name}: {differ}"


def test_threads_1_and_2_byte_identical(builder, data_root):
    t1 = builder.build("real-t1", [data_root.name], "--threads", "1", cwd=data_root.parent)
    time.sleep(1.1)  # so that anything time-dependent in the store shows
    t2 = builder.build("real-t2", [data_root.name], "--threads", "2", cwd=data_root.parent)
    _assert_identical(t1.store, t2.store)


def test_threads_byte_identical_with_many_chunks(builder, data_root):
    t1 = builder.build("real-chunks100-t1", [data_root.name], "--chunk-rows", "100", "--threads", "1",
                       cwd=data_root.parent)
    t2 = builder.build("real-chunks100-t2", [data_root.name], "--chunk-rows", "100", "--threads", "2",
                       cwd=data_root.parent)
    assert len(list((t1.store / "stamps").glob("[0-9]*"))) == 6
    _assert_identical(t1.store, t2.store)


def test_default_threads_equal_explicit(builder, real_default, data_root):
    t1 = builder.build("real-t1", [data_root.name], "--threads", "1", cwd=data_root.parent)
    _assert_identical(real_default.store, t1.store)


def test_rebuild_is_identical(builder, real_default, data_root):
    time.sleep(1.1)
    again = builder.build("real-default-again", [data_root.name], cwd=data_root.parent)
    _assert_identical(real_default.store, again.store)
