"""The light curves (`lightcurves/`) against a reference computed with fastavro from the packets.

docs/store-format.md § lightcurves and schemas/epochs.tsv, forced.tsv are the specification: per
object, every distinct detection (by candid) and upper limit (by objectId, jd, fid) that a stored
alert carried, once, with the values of the first stored alert that carried it; every distinct
forced-photometry epoch (by objectId, jd, fid, pid) with the values of the latest alert (greatest
jd, then greatest candid); the object index; each alert's own history. Checked on the real
folder, on the real folder built in two appends, on crafted 4.02 alerts that revise forced
photometry, through raw zarr, pandas, dask and the package's LightCurves reader (both engines).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import ztf2zarr
import ztfref
from conftest import local_files, open_root, run

EPOCHS = ztfref.table_columns("epochs.tsv")
FORCED = ztfref.table_columns("forced.tsv")
DETECTION, UPPER_LIMIT = "detection", "upper_limit"
ENGINES = ("direct", "zarr")
BOOM = "boom/2695378462115010012.avro"
HALVES_CHUNK = 64


# ----------------------------------------------------------------------------------------------
# the reference, from the packets


def epoch_key(kind: str, object_id: str, candid: int, jd: float, fid: int) -> tuple:
    """A detection is keyed by its candid alone (candids are unique across ZTF), an upper limit
    by (objectId, jd, fid)."""
    if kind == DETECTION:
        return (DETECTION, int(candid))
    return (UPPER_LIMIT, str(object_id), float(jd), int(fid))


def forced_key(object_id: str, jd: float, fid: int, pid: int) -> tuple:
    return (str(object_id), float(jd), int(fid), int(pid))


def _values(columns, record: dict, **fixed) -> dict:
    """Column name -> the record's field of that name (None or absent: the column's missing
    value); `fixed` gives the columns that do not come from the record."""
    out = {}
    for col in columns:
        v = fixed[col.name] if col.name in fixed else record.get(col.name)
        out[col.name] = col.missing_value() if v is None else v
    return out


def packet_epochs(record: dict) -> list:
    """(key, values) of each epoch the packet carries, in packet order: its prv_candidates (a
    null candid is an upper limit), then its own candidate (a detection); repeats included."""
    object_id = record["objectId"]
    entries = [(p, DETECTION if p.get("candid") is not None else UPPER_LIMIT) for p in record.get("prv_candidates") or []]
    entries.append((record["candidate"], DETECTION))
    out = []
    for source, kind in entries:
        values = _values(EPOCHS, source, objectId=object_id, kind=kind)
        assert source.get("jd") is not None, f"{object_id}: an epoch without jd"
        out.append((epoch_key(kind, object_id, values["candid"], values["jd"], values["fid"]), values))
    return out


def alert_order(record: dict) -> tuple:
    """Which of two alerts is the later one: greater jd, then greater candid."""
    return (float(record["candidate"]["jd"]), int(record["candid"]))


def packet_forced(record: dict) -> list:
    """(key, values) of each fp_hists entry, in packet order, holding this alert as the source."""
    object_id = record["objectId"]
    jd, candid = alert_order(record)
    out = []
    for fp in record.get("fp_hists") or []:
        values = _values(FORCED, fp, objectId=object_id, alert_candid=candid, alert_jd=jd)
        out.append((forced_key(object_id, values["jd"], values["fid"], values["pid"]), values))
    return out


def _once(keys) -> list:
    return list(dict.fromkeys(keys))


@dataclasses.dataclass
class Reference:
    epochs: dict  # key -> values of the first stored alert that carried it (first carried first)
    first_alert: dict  # key -> store row of that alert
    forced: dict  # key -> values of the latest alert that carried it
    history: list  # per store row: its packet's epoch keys, packet order, each once
    history_forced: list

    def objects(self, table: str) -> dict:
        """objectId -> set of keys of `table`."""
        by = collections.defaultdict(set)
        for key, values in (self.epochs if table == "epochs" else self.forced).items():
            by[values["objectId"]].add(key)
        return by


def reference(records: list) -> Reference:
    """The light curves of `records`, the stored alerts in store order."""
    ref = Reference({}, {}, {}, [], [])
    latest = {}
    for row, record in enumerate(records):
        epochs = packet_epochs(record)
        for key, values in epochs:
            if key not in ref.epochs:
                ref.epochs[key] = values
                ref.first_alert[key] = row
        ref.history.append(_once(k for k, _ in epochs))
        forced = packet_forced(record)
        seen_here = set()
        for key, values in forced:
            if key in seen_here:  # a repeat inside one packet: its first entry counts
                continue
            seen_here.add(key)
            if key not in latest or alert_order(record) > latest[key]:
                latest[key] = alert_order(record)
                ref.forced[key] = values
        ref.history_forced.append(_once(k for k, _ in forced))
    return ref


# ----------------------------------------------------------------------------------------------
# the store's tables


@dataclasses.dataclass
class Tables:
    store: Path
    root: object
    catalog: np.ndarray
    epochs: np.ndarray
    forced: np.ndarray
    objects: np.ndarray
    alerts: np.ndarray
    history_epochs: np.ndarray
    history_forced: np.ndarray
    attrs: dict
    epoch_keys: list
    forced_keys: list

    def table(self, name: str) -> np.ndarray:
        return self.epochs if name == "epochs" else self.forced

    def keys(self, name: str) -> list:
        return self.epoch_keys if name == "epochs" else self.forced_keys


def read_tables(store: Path) -> Tables:
    root = open_root(store)
    epochs = root["lightcurves/epochs"][:]
    forced = root["lightcurves/forced"][:]
    epoch_keys = [
        epoch_key(str(k), str(o), c, j, f)
        for k, o, c, j, f in zip(epochs["kind"], epochs["objectId"], epochs["candid"].tolist(), epochs["jd"].tolist(),
                                 epochs["fid"].tolist())
    ]
    forced_keys = [
        forced_key(o, j, f, p)
        for o, j, f, p in zip(forced["objectId"].tolist(), forced["jd"].tolist(), forced["fid"].tolist(), forced["pid"].tolist())
    ]
    return Tables(
        store, root, root["catalog"][:], epochs, forced, root["lightcurves/objects"][:], root["lightcurves/alerts"][:],
        root["lightcurves/history_epochs"][:], root["lightcurves/history_forced"][:],
        dict(root["lightcurves"].attrs), epoch_keys, forced_keys,
    )


def stored_records(catalog: np.ndarray, locate) -> list:
    """The packet of every catalog row, in store order; locate(source) -> path of the input."""
    return [ztfref.alert_from_file(str(locate(str(s)))).record for s in catalog["source"]]


# ----------------------------------------------------------------------------------------------
# the checks (each raises AssertionError naming what differs)


def _mismatches(actual: np.ndarray, expected: np.ndarray, columns, describe) -> list:
    problems = []
    for col in columns:
        for i in ztfref.field_mismatches(actual, expected, col.name):
            problems.append(f"{describe(i)} column {col.name}: store {actual[col.name][i]!r}, expected {expected[col.name][i]!r}")
    return problems


def same_rows(a: np.ndarray, b: np.ndarray, columns) -> bool:
    """Equal row for row (NaN equals NaN)."""
    return len(a) == len(b) and not _mismatches(a, b, columns, str)


def _window(starts, counts, i) -> slice:
    return slice(int(starts[i]), int(starts[i]) + int(counts[i]))


def check_dtypes(t: Tables):
    assert t.epochs.dtype == ztfref.table_dtype(EPOCHS)
    assert t.forced.dtype == ztfref.table_dtype(FORCED)
    assert t.history_epochs.dtype == np.dtype("<i8") and t.history_forced.dtype == np.dtype("<i8")
    assert set(t.epochs["kind"].tolist()) <= {DETECTION, UPPER_LIMIT}


def check_no_repeats(t: Tables):
    for name in ("epochs", "forced"):
        repeated = {k: n for k, n in collections.Counter(t.keys(name)).items() if n > 1}
        assert not repeated, f"{name}: {len(repeated)} keys repeat, e.g. {list(repeated.items())[:5]}"


def check_key_sets(t: Tables, ref: Reference):
    for name in ("epochs", "forced"):
        have = collections.defaultdict(set)
        for key, object_id in zip(t.keys(name), t.table(name)["objectId"].tolist()):
            have[object_id].add(key)
        want = ref.objects(name)
        problems = []
        for object_id in sorted(set(have) | set(want)):
            missing, extra = want[object_id] - have[object_id], have[object_id] - want[object_id]
            if missing or extra:
                problems.append(f"{object_id}: missing {sorted(missing)[:3]} ({len(missing)}), "
                                f"extra {sorted(extra)[:3]} ({len(extra)})")
        assert not problems, f"{name}: {len(problems)} objects differ from the packets:\n" + "\n".join(problems[:20])


def check_values(t: Tables, ref: Reference):
    """Every row holds the reference's values: the first stored alert's for epochs, the latest's
    for forced photometry (with its alert_candid and alert_jd)."""
    for name, columns, values in (("epochs", EPOCHS, ref.epochs), ("forced", FORCED, ref.forced)):
        keys = t.keys(name)
        expected = ztfref.expected_table(columns, [values[k] for k in keys])
        problems = _mismatches(t.table(name), expected, columns, lambda i: f"{name} row {i} {keys[i]}")
        assert not problems, f"{len(problems)} values differ:\n" + "\n".join(problems[:30])


def check_row_order(t: Tables, ref: Reference):
    """Rows are in input order, each alert's new epochs together."""
    first = [ref.first_alert[k] for k in t.epoch_keys]
    assert first == sorted(first)


def check_object_index(t: Tables):
    assert set(t.objects["table"].tolist()) <= {"epochs", "forced"}
    for name in ("epochs", "forced"):
        table = t.table(name)
        ranges = t.objects[t.objects["table"] == name]
        covered = np.zeros(len(table), dtype=np.int64)
        problems = []
        for object_id, start, count in zip(ranges["objectId"], ranges["start"], ranges["count"]):
            assert count > 0 and 0 <= start and start + count <= len(table), (name, object_id, start, count)
            covered[start : start + count] += 1
            others = set(table["objectId"][start : start + count].tolist()) - {str(object_id)}
            if others:
                problems.append(f"{name} range {object_id} {start}+{count} holds rows of {sorted(others)}")
        assert not problems, "\n".join(problems[:20])
        assert (covered == 1).all(), f"{name}: rows covered {collections.Counter(covered.tolist())} times (want every row once)"


def _counted(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def counts(t: Tables) -> dict:
    kinds = collections.Counter(t.epochs["kind"].tolist())
    return {"objects": len(set(t.objects["objectId"].tolist())), "detections": kinds[DETECTION],
            "upper_limits": kinds[UPPER_LIMIT], "forced": len(t.forced)}


def check_counts(t: Tables, binary: Path):
    """Rows per kind == lightcurves/.zattrs and what `info` (text and --json) says."""
    have = counts(t)
    assert t.attrs["ztf2zarr"]["rows"] == {k: have[k] for k in ("detections", "upper_limits", "forced")}
    info = json.loads(run(binary, ["info", "--json", t.store], t.store.parent).check().stdout)
    assert info["lightcurves"] == have
    text = run(binary, ["info", t.store], t.store.parent).check().stdout
    line = (f"light curves {_counted(have['objects'], 'object')}: {_counted(have['detections'], 'detection')}, "
            f"{_counted(have['upper_limits'], 'upper limit')}, {_counted(have['forced'], 'forced-photometry epoch')}")
    assert line in text, text


def check_history_raw(t: Tables, ref: Reference):
    """Every catalog row's history windows list exactly its packet's epochs (keys in packet
    order, each once), and the rows read through get_coordinate_selection hold the reference's
    values."""
    assert len(t.alerts) == len(t.catalog) == len(ref.history)
    for name, columns, values, starts, counts_, carried, want in (
        ("epochs", EPOCHS, ref.epochs, t.alerts["history_start"], t.alerts["history_count"], t.history_epochs, ref.history),
        ("forced", FORCED, ref.forced, t.alerts["forced_start"], t.alerts["forced_count"], t.history_forced, ref.history_forced),
    ):
        keys = t.keys(name)
        problems, rows = [], []
        for i in range(len(t.alerts)):
            mine = carried[_window(starts, counts_, i)]
            got = [keys[r] for r in mine]
            if got != want[i]:
                problems.append(f"row {i} ({t.catalog['source'][i]}): {name} history {got[:3]}… ({len(got)}) "
                                f"!= packet {want[i][:3]}… ({len(want[i])})")
            rows.append(mine)
        assert not problems, f"{len(problems)} {name} histories differ:\n" + "\n".join(problems[:20])
        flat = np.concatenate(rows)
        array = t.root[f"lightcurves/{name}"]
        if len(flat):
            read = array.get_coordinate_selection(flat)
            expected = ztfref.expected_table(columns, [values[keys[r]] for r in flat])
            problems = _mismatches(read, expected, columns, lambda i: f"{name} history entry {i} (row {flat[i]})")
            assert not problems, "\n".join(problems[:30])
        # One alert's history read the documented way: slice of history_*, then coordinate selection.
        for i in sorted({0, len(t.alerts) // 2, len(t.alerts) - 1}):
            window = t.root[f"lightcurves/history_{name}"][_window(starts, counts_, i)]
            if len(window):
                assert [keys[r] for r in window.tolist()] == want[i]
                assert same_rows(array.get_coordinate_selection(window), t.table(name)[window], columns)


def check_all(store: Path, locate, binary: Path) -> tuple[Tables, Reference]:
    """Every check of the store's light curves against the reference of its stored packets, and
    `verify`."""
    t = read_tables(store)
    ref = reference(stored_records(t.catalog, locate))
    check_dtypes(t)
    check_no_repeats(t)
    check_key_sets(t, ref)
    check_values(t, ref)
    check_row_order(t, ref)
    check_object_index(t)
    check_counts(t, binary)
    check_history_raw(t, ref)
    run(binary, ["verify", store], store.parent).check()
    return t, ref


# ----------------------------------------------------------------------------------------------
# 1, 2: the real folder


@pytest.fixture(scope="session")
def real_lc(real_default, data_root):
    t = read_tables(real_default.store)
    return t, reference(stored_records(t.catalog, lambda s: data_root.parent / s))


def test_reference_sees_the_data(real_lc, real_expectation):
    """The reference itself: the stored packets are the accepted inputs, and the data exercise
    what the tests rely on (upper limits, repeats across alerts, forced photometry)."""
    t, ref = real_lc
    assert [str(s) for s in t.catalog["source"]] == [s for s, _ in real_expectation.rows]
    kinds = collections.Counter(v["kind"] for v in ref.epochs.values())
    assert kinds[DETECTION] > 1000 and kinds[UPPER_LIMIT] > 1000
    assert len(ref.forced) == 10  # boom's fp_hists, the only 4.x alert
    carried = sum(len(h) for h in ref.history)
    assert carried > len(ref.epochs), "no epoch is carried by two alerts"


def test_tables_have_the_schema_dtypes(real_lc):
    check_dtypes(real_lc[0])


def test_no_key_repeats(real_lc):
    check_no_repeats(real_lc[0])


def test_each_objects_keys_are_the_packets(real_lc):
    check_key_sets(*real_lc)


def test_values_are_the_first_stored_alerts(real_lc):
    check_values(*real_lc)


def test_rows_follow_the_input_order(real_lc):
    check_row_order(*real_lc)


def test_object_index_covers_every_row_once(real_lc):
    check_object_index(real_lc[0])


def test_counts_match_info_and_attrs(real_lc, binary):
    check_counts(real_lc[0], binary)


def test_every_alerts_history_is_its_packet_raw_zarr(real_lc):
    check_history_raw(*real_lc)


def test_verify_passes(real_default, binary):
    r = run(binary, ["verify", real_default.store], real_default.store.parent).check()
    assert "light curves" in r.stdout + r.stderr


def test_unstored_alerts_add_no_epoch(real_lc, real_expectation, data_root):
    """Rejected inputs that fastavro can read (JPEG and null cutouts) carry epochs; none of those
    that no stored alert carried is in the store."""
    t, ref = real_lc
    stored = set(t.epoch_keys)
    theirs = set()
    for source in real_expectation.rejects:
        try:
            record = ztfref.read_record((data_root.parent / source).read_bytes())
        except ztfref.BadAlert:
            continue
        theirs |= {k for k, _ in packet_epochs(record)} - set(ref.epochs)
    assert len(theirs) > 100
    assert not theirs & stored


# ----------------------------------------------------------------------------------------------
# 3: the real folder in two appends


@dataclasses.dataclass
class Halves:
    first: list
    second: list
    store: Path


@pytest.fixture(scope="session")
def real_halves(binary, data_root, real_default, tmp_path_factory) -> Halves:
    """The real folder's inputs (in the one-shot build's order) built as two appends, split
    just before the second alert of an object whose first alert is in the first half; small
    chunks, so that histories and curves span several."""
    inputs = [str(p.relative_to(data_root.parent)) for p in ztfref.walk(data_root)]
    catalog = open_root(real_default.store)["catalog"][:]
    first_of, split = {}, None
    for source, object_id in zip(catalog["source"].tolist(), catalog["objectId"].tolist()):
        if object_id in first_of:
            split = inputs.index(source)
            break
        first_of[object_id] = source
    assert split is not None, "no object with two stored alerts"
    store = tmp_path_factory.mktemp("lc-halves") / "halves.zarr"
    run(binary, ["build", *inputs[:split], "-o", store, "--no-progress", "--chunk-rows", HALVES_CHUNK], data_root.parent).check()
    run(binary, ["build", *inputs[split:], "-o", store, "--no-progress"], data_root.parent).check()
    return Halves(inputs[:split], inputs[split:], store)


def test_appended_halves_match_the_packets(real_halves, data_root, binary):
    t, ref = check_all(real_halves.store, lambda s: data_root.parent / s, binary)
    object_ids = t.catalog["objectId"].tolist()
    sources = t.catalog["source"].tolist()
    first = set(real_halves.first)
    both = {o for o, s in zip(object_ids, sources) if s in first} & {o for o, s in zip(object_ids, sources) if s not in first}
    assert both, "no object has alerts in both halves"
    # Several ranges per object after the append.
    assert len(t.objects) > len(set(t.objects["objectId"].tolist()))


def test_appended_halves_equal_the_one_shot_build(real_halves, real_lc):
    one, _ = real_lc
    halves = read_tables(real_halves.store)
    assert halves.catalog["source"].tolist() == one.catalog["source"].tolist()
    for name in ("epochs", "forced"):
        assert set(halves.keys(name)) == set(one.keys(name))
        # Rows are in input order, each alert's new epochs together: the same table.
        assert same_rows(halves.table(name), one.table(name), EPOCHS if name == "epochs" else FORCED)
    assert counts(halves) == counts(one)


# ----------------------------------------------------------------------------------------------
# 4: crafted 4.02 alerts revising forced photometry


@dataclasses.dataclass
class Crafted:
    folder: Path
    original: dict
    later: dict  # greater jd: its fp_hists values replace the original's
    earlier: dict  # smaller jd: its fp_hists values do not


def craft(original: dict, candid: int, days: float) -> dict:
    """A later (days > 0) or earlier alert of the same object: its own candidate at jd + days
    with a new candid; the original's prv_candidates, then the original's candidate as a
    prv_candidate (with another magpsf, which must not replace the first stored value), one new
    upper limit, one at the jd of an existing one in another filter (a new epoch), and the first
    upper limit again with another diffmaglim (a repeat inside the packet and of the original's,
    keeping the first value); the original's fp_hists with revised fluxes, and one new forced
    epoch."""
    record = copy.deepcopy(original)
    cand = record["candidate"]
    record["candid"] = cand["candid"] = candid
    cand["jd"] += days
    cand["magpsf"] += 0.25
    prv = record["prv_candidates"]
    detection = copy.deepcopy(next(p for p in prv if p.get("candid") is not None))
    for name in detection:
        if name in original["candidate"]:
            detection[name] = original["candidate"][name]
    detection["magpsf"] = original["candidate"]["magpsf"] + 1.0
    limit = copy.deepcopy(next(p for p in prv if p.get("candid") is None))
    limit["jd"] = original["candidate"]["jd"] + days / 2
    other_filter = copy.deepcopy(next(p for p in prv if p.get("candid") is None))
    other_filter["fid"] = 3 - other_filter["fid"]
    repeat = copy.deepcopy(next(p for p in prv if p.get("candid") is None))
    repeat["diffmaglim"] += 0.5
    record["prv_candidates"] = prv + [detection, limit, other_filter, repeat]
    fps = record["fp_hists"]
    for i, fp in enumerate(fps):
        fp["forcediffimflux"] = (fp["forcediffimflux"] or 0.0) * 2 + 100.0 + i
    new = copy.deepcopy(fps[0])
    new["jd"] = original["candidate"]["jd"] + days / 4
    new["pid"] += 7
    fps.append(new)
    return record


@pytest.fixture(scope="session")
def crafted(data_root, tmp_path_factory) -> Crafted:
    folder = tmp_path_factory.mktemp("lc-crafted")
    schema, original = ztfref.read_with_schema(data_root / BOOM)
    limits = [p for p in original["prv_candidates"] if p.get("candid") is None]
    assert original["fp_hists"] and limits and limits[0]["fid"] in (1, 2)
    assert not [p for p in limits if p["jd"] == limits[0]["jd"] and p["fid"] != limits[0]["fid"]]
    shutil.copyfile(data_root / BOOM, folder / "original.avro")
    later = craft(original, original["candid"] + 1, 1.0)
    earlier = craft(original, original["candid"] + 2, -1.0)
    ztfref.write_alert(folder / "later.avro", schema, later)
    ztfref.write_alert(folder / "earlier.avro", schema, earlier)
    return Crafted(folder, original, later, earlier)


def _build_crafted(binary, crafted: Crafted, name: str, *nights) -> Path:
    """Build `nights` (lists of file names in the crafted folder) as one build each, appending."""
    store = crafted.folder / f"{name}.zarr"
    assert not store.exists()
    for night in nights:
        run(binary, ["build", *night, "-o", store, "--no-progress"], crafted.folder).check()
    return store


def _expected_forced(record: dict) -> np.ndarray:
    return ztfref.expected_table(FORCED, [v for _, v in packet_forced(record)])


def _forced_rows(t: Tables, record: dict) -> np.ndarray:
    where = {k: i for i, k in enumerate(t.forced_keys)}
    return t.forced[[where[k] for k, _ in packet_forced(record)]]


def _check_crafted(binary, crafted: Crafted, store: Path, winner: dict, others: list):
    """The general checks, then explicitly: every forced epoch of the original holds `winner`'s
    values; the new epochs of `others` appear once; the original candidate, repeated by them,
    is one row with its first values."""
    t, _ = check_all(store, lambda s: crafted.folder / s, binary)
    original = crafted.original
    revised = _forced_rows(t, original)
    want = _expected_forced(winner)[: len(original["fp_hists"])]
    assert not _mismatches(revised, want, FORCED, str), _mismatches(revised, want, FORCED, str)[:5]
    assert (revised["alert_candid"] == winner["candid"]).all() and (revised["alert_jd"] == winner["candidate"]["jd"]).all()
    assert len(t.forced) == len(original["fp_hists"]) + len(others)
    for other in others:
        new = _forced_rows(t, other)[-1:]
        assert same_rows(new, _expected_forced(other)[-1:], FORCED)
    # The original candidate: one row, the values of the first stored alert that carried it
    # (the original's own, or the crafted alert's prv_candidate copy, with magpsf + 1).
    detections = t.epochs[t.epochs["candid"] == original["candid"]]
    first_magpsf = original["candidate"]["magpsf"] + (0.0 if t.catalog["candid"][0] == original["candid"] else 1.0)
    assert len(detections) == 1 and detections["magpsf"][0] == np.float32(first_magpsf)
    own = len(_once(k for k, _ in packet_epochs(original)))
    # Each crafted alert: its candidate and its new upper limit; the one in the other filter is
    # the same epoch in every crafted alert.
    assert len(t.epochs) == own + 2 * len(others) + 1
    first_limit = next(p for p in original["prv_candidates"] if p.get("candid") is None)
    kept = t.epochs[(t.epochs["kind"] == UPPER_LIMIT) & (t.epochs["jd"] == first_limit["jd"])]
    assert sorted(kept["fid"].tolist()) == sorted([first_limit["fid"], 3 - first_limit["fid"]])
    # Its repeat (in a crafted packet, after the unchanged entry) keeps the first value.
    assert kept[kept["fid"] == first_limit["fid"]]["diffmaglim"][0] == np.float32(first_limit["diffmaglim"])
    assert sorted(t.catalog["candid"].tolist()) == sorted(r["candid"] for r in [original, *others])


@pytest.mark.parametrize("order", ["original-first", "later-first"])
def test_later_alert_revises_forced_photometry_in_one_build(binary, crafted, order):
    names = ["original.avro", "later.avro"] if order == "original-first" else ["later.avro", "original.avro"]
    store = _build_crafted(binary, crafted, f"later-one-build-{order}", names)
    _check_crafted(binary, crafted, store, crafted.later, [crafted.later])


def test_later_alert_revises_forced_photometry_on_append(binary, crafted):
    store = _build_crafted(binary, crafted, "later-append", ["original.avro"], ["later.avro"])
    _check_crafted(binary, crafted, store, crafted.later, [crafted.later])


def test_earlier_alert_changes_no_forced_row_in_one_build(binary, crafted):
    store = _build_crafted(binary, crafted, "earlier-one-build", ["original.avro", "earlier.avro"])
    _check_crafted(binary, crafted, store, crafted.original, [crafted.earlier])


def test_earlier_alert_changes_no_forced_row_on_append(binary, crafted):
    store = _build_crafted(binary, crafted, "earlier-append", ["original.avro"], ["earlier.avro"])
    _check_crafted(binary, crafted, store, crafted.original, [crafted.earlier])


def test_later_then_earlier_appends(binary, crafted):
    store = _build_crafted(binary, crafted, "three-appends", ["original.avro"], ["later.avro"], ["earlier.avro"])
    _check_crafted(binary, crafted, store, crafted.later, [crafted.later, crafted.earlier])


# ----------------------------------------------------------------------------------------------
# 5: readers: pandas, dask, the package's LightCurves


@pytest.fixture(scope="session", params=["one-shot", "halves"])
def lc_store(request, real_lc, real_halves, data_root):
    """(store, tables, reference) of the real folder built at once, and in two appends."""
    if request.param == "one-shot":
        t, ref = real_lc
    else:
        t = read_tables(real_halves.store)
        ref = reference(stored_records(t.catalog, lambda s: data_root.parent / s))
    return t.store, t, ref


def test_pandas_and_dask_read_the_tables(lc_store):
    import dask.array as da
    import pandas as pd

    store, t, _ = lc_store
    root = open_root(store)
    epochs = pd.DataFrame(root["lightcurves/epochs"][:])
    assert list(epochs.columns) == [c.name for c in EPOCHS]
    assert epochs["kind"].value_counts().to_dict() == {k: v for k, v in collections.Counter(t.epochs["kind"].tolist()).items()}
    # One object's curve the way docs/store-format.md shows it, against the reader's.
    index = pd.DataFrame(root["lightcurves/objects"][:])
    object_id = collections.Counter(t.epochs["objectId"].tolist()).most_common(1)[0][0]
    one = index[(index.objectId == object_id) & (index.table == "epochs")]
    curve = pd.concat([epochs.iloc[s : s + n] for s, n in zip(one.start, one["count"])]).sort_values("jd", kind="stable")
    assert same_rows(curve.to_records(index=False).astype(t.epochs.dtype), ztf2zarr.curve(store, object_id), EPOCHS)
    for name in ("epochs", "forced", "history_epochs"):
        lazy = da.from_zarr(root[f"lightcurves/{name}"])
        assert lazy.shape == root[f"lightcurves/{name}"].shape
        computed = lazy.compute()
        expected = t.history_epochs if name == "history_epochs" else t.table(name)
        assert computed.dtype == expected.dtype
        assert np.array_equal(computed, expected) if name == "history_epochs" else same_rows(
            computed, expected, EPOCHS if name == "epochs" else FORCED)


def _joined(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype)


@pytest.mark.parametrize("engine", ENGINES)
def test_reader_curve_of_every_object(lc_store, engine):
    """curve() of every object and table: the object's store rows sorted by jd (stable), whose
    keys and values are the reference's."""
    store, t, ref = lc_store
    lc = ztf2zarr.LightCurves(store, engine=engine)
    with_rows = set(t.epochs["objectId"].tolist()) | set(t.forced["objectId"].tolist())
    assert lc.objects.tolist() == sorted(with_rows)
    assert set(lc.objects.tolist()) == set(ref.objects("epochs")) | set(ref.objects("forced"))
    for name, columns in (("epochs", EPOCHS), ("forced", FORCED)):
        table, want, values = t.table(name), ref.objects(name), ref.epochs if name == "epochs" else ref.forced
        by_object = collections.defaultdict(list)
        for i, object_id in enumerate(table["objectId"].tolist()):
            by_object[object_id].append(i)
        curves = [lc.curve(o, name) for o in lc.objects.tolist()]
        problems = []
        for object_id, got in zip(lc.objects.tolist(), curves):
            keys = read_keys(got, name)
            if len(keys) != len(want[object_id]) or set(keys) != want[object_id]:
                problems.append(f"{name} {object_id}: curve keys {sorted(set(keys))[:3]} ({len(keys)}) "
                                f"!= the packets' ({len(want[object_id])})")
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])
        got = _joined(curves, table.dtype)
        rows = [np.array(by_object[o], dtype=np.int64) for o in lc.objects.tolist()]
        store_order = _joined([r[np.argsort(table["jd"][r], kind="stable")] for r in rows], np.int64)
        assert same_rows(got, table[store_order], columns), f"{name}: curves differ from the store's rows sorted by jd"
        expected = ztfref.expected_table(columns, [values[k] for k in read_keys(got, name)])
        problems = _mismatches(got, expected, columns, lambda i: f"{name} curve row {i}")
        assert not problems, f"{len(problems)} values differ:\n" + "\n".join(problems[:20])
    assert sum(len(lc.curve(o, "forced")) for o in lc.objects.tolist()) == len(t.forced) > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_reader_history_of_every_alert(lc_store, engine):
    """history(), history_rows() of every catalog row and histories() of all: its packet's epochs
    in packet order, each once, with the reference's values."""
    store, t, ref = lc_store
    lc = ztf2zarr.LightCurves(store, engine=engine)
    n = len(t.catalog)
    for name, columns, starts, counts_, carried, want in (
        ("epochs", EPOCHS, t.alerts["history_start"], t.alerts["history_count"], t.history_epochs, ref.history),
        ("forced", FORCED, t.alerts["forced_start"], t.alerts["forced_count"], t.history_forced, ref.history_forced),
    ):
        values = ref.epochs if name == "epochs" else ref.forced
        flat_keys = [k for row in want for k in row]
        expected = ztfref.expected_table(columns, [values[k] for k in flat_keys])
        windows = [carried[_window(starts, counts_, row)] for row in range(n)]
        many = lc.histories(range(n), name)
        assert len(many) == n and [len(h) for h in many] == [len(w) for w in want]
        readings = {"histories": _joined(many, t.table(name).dtype)}
        rows = [lc.history_rows(row, name) for row in range(n)]
        assert all(r.dtype == np.int64 for r in rows)
        assert [r.tolist() for r in rows] == [w.tolist() for w in windows]
        readings["history"] = _joined([lc.history(row, name) for row in range(n)], t.table(name).dtype)
        for how, got in readings.items():
            assert read_keys(got, name) == flat_keys, f"{name} {how}: keys differ from the packets'"
            problems = _mismatches(got, expected, columns, lambda i: f"{name} {how} entry {i}")
            assert not problems, f"{len(problems)} values differ:\n" + "\n".join(problems[:20])
    assert same_rows(lc.history(-1), lc.history(n - 1), EPOCHS)


def read_keys(rows: np.ndarray, name: str) -> list:
    """The keys of rows of table `name`."""
    if name == "epochs":
        return [epoch_key(str(k), str(o), c, j, f) for k, o, c, j, f in
                zip(rows["kind"], rows["objectId"], rows["candid"].tolist(), rows["jd"].tolist(), rows["fid"].tolist())]
    return [forced_key(o, j, f, p) for o, j, f, p in
            zip(rows["objectId"].tolist(), rows["jd"].tolist(), rows["fid"].tolist(), rows["pid"].tolist())]


@pytest.mark.parametrize("engine", ENGINES)
def test_module_functions_and_errors(real_lc, engine):
    t, ref = real_lc
    store = t.store
    boom_row = next(i for i, s in enumerate(t.catalog["source"].tolist()) if s.endswith(BOOM))
    object_id = str(t.catalog["objectId"][boom_row])
    lc = ztf2zarr.LightCurves(store, engine=engine)
    assert same_rows(ztf2zarr.curve(store, object_id, engine=engine), lc.curve(object_id), EPOCHS)
    assert same_rows(ztf2zarr.curve(store, object_id, table="forced", engine=engine), lc.curve(object_id, "forced"), FORCED)
    assert len(lc.curve(object_id, "forced")) == 10
    assert same_rows(ztf2zarr.history(store, boom_row, engine=engine), lc.history(boom_row), EPOCHS)
    forced = ztf2zarr.history(store, boom_row, table="forced", engine=engine)
    assert read_keys(forced, "forced") == ref.history_forced[boom_row] and len(forced) == 10
    three = next(i for i, s in enumerate(t.catalog["source"].tolist()) if "fink-alert-simulator" in s)
    assert len(lc.history(three, "forced")) == 0 and len(lc.curve(str(t.catalog["objectId"][three]), "forced")) == 0
    with pytest.raises(KeyError, match="ZTF00nothere"):
        lc.curve("ZTF00nothere")
    with pytest.raises(KeyError, match="ZTF00nothere"):
        ztf2zarr.curve(store, "ZTF00nothere", engine=engine)
    for row in (len(t.catalog), -len(t.catalog) - 1):
        with pytest.raises(IndexError):
            lc.history(row)
        with pytest.raises(IndexError):
            ztf2zarr.history(store, row, engine=engine)
    for call in (lambda: lc.curve(object_id, "stamps"), lambda: lc.history(0, "catalog"), lambda: lc.history_rows(0, "x"),
                 lambda: ztf2zarr.history(store, 0, table="epoch", engine=engine)):
        with pytest.raises(ValueError):
            call()


# ----------------------------------------------------------------------------------------------
# 6: --no-lightcurves


NIGHT_1, NIGHT_2 = "kowalski-20200202", "fink-alert-schemas"


def _no_lightcurves_anywhere(store: Path):
    root = open_root(store)
    assert "lightcurves" not in root
    assert not (store / "lightcurves").exists()
    consolidated = ztfref.read_json(store / ".zmetadata")["metadata"]
    assert not [k for k in consolidated if k.startswith("lightcurves")]
    for engine in ENGINES:
        with pytest.raises(ValueError, match="no light curves"):
            ztf2zarr.LightCurves(store, engine=engine)
        with pytest.raises(ValueError, match="no light curves"):
            ztf2zarr.curve(store, str(root["catalog"][0]["objectId"]), engine=engine)


def test_no_lightcurves_store_stays_without(binary, data_root, tmp_path):
    store = tmp_path / "plain.zarr"
    run(binary, ["build", NIGHT_1, "-o", store, "--no-progress", "--no-lightcurves"], data_root).check()
    _no_lightcurves_anywhere(store)
    assert json.loads(run(binary, ["info", "--json", store], tmp_path).check().stdout)["lightcurves"] is None
    rows = open_root(store)["catalog"].shape[0]
    run(binary, ["build", NIGHT_2, "-o", store, "--no-progress"], data_root).check()  # no flag: still none
    assert open_root(store)["catalog"].shape[0] > rows
    _no_lightcurves_anywhere(store)
    run(binary, ["verify", store], tmp_path).check()


def test_no_lightcurves_on_a_store_with_them_is_refused(binary, data_root, tmp_path):
    store = tmp_path / "curves.zarr"
    run(binary, ["build", NIGHT_1, "-o", store, "--no-progress"], data_root).check()
    before = local_files(store)
    r = run(binary, ["build", NIGHT_2, "-o", store, "--no-progress", "--no-lightcurves"], data_root)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert re.search(r"light.?curves", r.stderr, re.I), r.stderr
    assert local_files(store) == before
    check_all(store, lambda s: data_root / s, binary)


# ----------------------------------------------------------------------------------------------
# 7: verify notices a damaged light-curve table


def _damaged(binary, store: Path, pattern: str):
    r = run(binary, ["verify", store], store.parent)
    assert r.returncode != 0, r.stdout
    assert re.search(pattern, r.stdout + r.stderr), r.stdout + r.stderr


def test_verify_finds_a_repeated_epoch(binary, data_root, tmp_path):
    import zarr

    store = tmp_path / "repeated.zarr"
    run(binary, ["build", NIGHT_1, "-o", store, "--no-progress"], data_root).check()
    run(binary, ["verify", store], tmp_path).check()
    epochs = zarr.open_array(str(store / "lightcurves" / "epochs"), mode="r+")
    epochs[1] = epochs[0]  # row 1 now repeats row 0's key
    _damaged(binary, store, r"repeat a key")


def test_verify_finds_wrong_counts_in_attrs(binary, data_root, tmp_path):
    store = tmp_path / "counts.zarr"
    run(binary, ["build", NIGHT_1, "-o", store, "--no-progress"], data_root).check()
    for path, at in ((store / "lightcurves" / ".zattrs", ()), (store / ".zmetadata", ("metadata", "lightcurves/.zattrs"))):
        doc = ztfref.read_json(path)
        attrs = doc
        for key in at:
            attrs = attrs[key]
        attrs["ztf2zarr"]["rows"]["detections"] += 1
        path.write_text(json.dumps(doc))
    _damaged(binary, store, r"rows per kind")
