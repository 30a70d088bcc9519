"""Every input is accounted for: 529 rows, 1 duplicate, 18 rejects with a reason naming the cause."""

from __future__ import annotations

import re

import ztfref
from conftest import open_root

EXPECTED_REJECT_DIRS = {
    "ampel/ztf_public_20180601-corrupt": ("corrupt", 5),
    "ampel/ipac-2016-jpeg-cutouts-corrupt": ("corrupt", 2),
    "ampel/ipac-2016-jpeg-cutouts": ("jpeg", 10),
}
NULL_CUTOUT = "ampel/tests/ZTF20abyfpze.avro"

# What a reason must say for each cause.
REASON_WORDS = {
    "corrupt": re.compile(r"sync|corrupt|truncat|union|end of (file|input|data)|eof", re.I),
    "jpeg": re.compile(r"jpeg", re.I),
    "null-cutout": re.compile(r"null|missing", re.I),
}


def test_reference_sees_the_documented_bad_inputs(real_expectation, data_root):
    """Sanity check of the reference itself against the data's MANIFEST."""
    counts = {}
    for source, kind in real_expectation.rejects.items():
        rel = source.split("/", 1)[1]
        key = rel.rsplit("/", 1)[0] if rel != NULL_CUTOUT else NULL_CUTOUT
        counts.setdefault(key, []).append(kind)
    assert counts.pop(NULL_CUTOUT) == ["null-cutout"]
    for d, (kind, n) in EXPECTED_REJECT_DIRS.items():
        assert counts.pop(d) == [kind] * n, d
    assert not counts
    assert len(real_expectation.rows) == 529
    assert len(real_expectation.duplicates) == 1


def test_rejects_jsonl_lists_exactly_the_bad_inputs(real_default, real_expectation):
    rejects = ztfref.read_rejects(real_default.store)
    assert len(rejects) == 18
    assert all(set(r) >= {"source", "reason"} for r in rejects)
    sources = [r["source"] for r in rejects]
    assert len(set(sources)) == 18
    assert set(sources) == set(real_expectation.rejects)
    assert sources == list(real_expectation.rejects)  # in input (walk) order


def test_reject_reasons_name_the_cause(real_default, real_expectation):
    problems = []
    for r in ztfref.read_rejects(real_default.store):
        kind = real_expectation.rejects.get(r["source"])
        reason = r["reason"]
        if not isinstance(reason, str) or not REASON_WORDS.get(kind, re.compile("$^")).search(reason):
            problems.append(f"{r['source']} ({kind}): {reason!r}")
    assert not problems, "\n".join(problems)


def test_rows_duplicates_and_rejects_add_up(real_default, real_expectation, data_root):
    n_inputs = len(ztfref.walk(data_root))
    assert n_inputs == 548
    root = open_root(real_default.store)
    assert root["catalog"].shape == (529,)
    assert root["stamps"].shape[0] == 529
    rejects = ztfref.read_rejects(real_default.store)
    # the duplicate is counted, not rejected and not written
    dup = real_expectation.duplicates[0]
    assert dup not in {r["source"] for r in rejects}
    assert dup not in {str(s) for s in root["catalog"][:]["source"]}
    assert 529 + len(real_expectation.duplicates) + len(rejects) == n_inputs


def test_build_with_rejects_exits_zero(real_default):
    assert real_default.run.returncode == 0


def test_strict_fails_without_a_store(builder, data_root):
    b = builder.build("real-strict", [data_root.name], "--strict", cwd=data_root.parent, check=False)
    assert b.run.returncode == 2, (b.run.stdout, b.run.stderr)
    assert not b.store.exists()


def test_strict_succeeds_on_good_inputs(builder, data_root):
    b = builder.build("kowalski-strict", [f"{data_root.name}/kowalski-20200202"], "--strict",
                      cwd=data_root.parent)
    assert open_root(b.store)["catalog"].shape == (12,)
    assert ztfref.rejects_logs(b.store) == []
