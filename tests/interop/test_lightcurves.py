"""The light curves (`lightcurves/`) against a reference computed with fastavro from the packets.

docs/lightcurves.md and schemas/epochs.tsv, forced.tsv are the specification. Each table is a
group of 1-D column arrays. A detection is keyed by candid, an upper limit by (objectId, jd, fid),
a forced-photometry epoch by (objectId, jd, fid, pid); a key has one row per distinct value set
that stored alerts carried (alert_jd, alert_candid name the first alert, in store order, that
carried it), identical value sets add nothing, and no committed row is rewritten. Each alert's
history lists the very rows its packet carried. Checked on the real folder, on the real folder
built in two appends, on crafted 4.02 alerts that revise forced photometry (in one build, on
append, an older night after a newer one), through raw zarr, pandas, xarray, dask and the
package's LightCurves reader (both engines), and on a store of the previous release's layout.
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
COLUMNS = {"epochs": EPOCHS, "forced": FORCED}
TABLES = ("epochs", "forced")
ALERT_COLUMNS = ("alert_jd", "alert_candid")
DETECTION, UPPER_LIMIT = "detection", "upper_limit"
ENGINES = ("direct", "zarr")
BOOM = "boom/2695378462115010012.avro"
HALVES_CHUNK = 64
NIGHT_1, NIGHT_2 = "kowalski-20200202", "fink-alert-schemas"
#: The groups of lightcurves/, their dimension name and (for the index tables) their columns.
DIMENSIONS = {"epochs": "epoch", "forced": "forced_epoch", "objects": "object_range", "alerts": "alert"}
INDEX_COLUMNS = {
    "objects": {"objectId": "str", "table": "str", "start": "<i8", "count": "<i8"},
    "alerts": {"history_start": "<i8", "history_count": "<i4", "forced_start": "<i8", "forced_count": "<i4"},
}


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


def version_of(table: str, values: dict) -> tuple:
    """A row's identity: its key and every value but the alert's, as stored."""
    if table == "epochs":
        key = epoch_key(values["kind"], values["objectId"], values["candid"], values["jd"], values["fid"])
    else:
        key = forced_key(values["objectId"], values["jd"], values["fid"], values["pid"])
    return (key, tuple(c.stored(values[c.name]) for c in COLUMNS[table] if c.name not in ALERT_COLUMNS))


def key_of(version: tuple) -> tuple:
    return version[0]


def _values(columns, record: dict, **fixed) -> dict:
    """Column name -> the record's field of that name (None or absent: the column's missing
    value); `fixed` gives the columns that do not come from the record."""
    out = {}
    for col in columns:
        v = fixed[col.name] if col.name in fixed else record.get(col.name)
        out[col.name] = col.missing_value() if v is None else v
    return out


def alert_order(record: dict) -> tuple:
    """Which of two alerts is the later one: greater jd, then greater candid."""
    return (float(record["candidate"]["jd"]), int(record["candid"]))


def packet_epochs(record: dict) -> list:
    """The values of each epoch the packet carries, in packet order: its prv_candidates (a null
    candid is an upper limit), then its own candidate (a detection); repeats included; the
    packet's alert as alert_jd, alert_candid."""
    object_id = record["objectId"]
    jd, candid = alert_order(record)
    entries = [(p, DETECTION if p.get("candid") is not None else UPPER_LIMIT) for p in record.get("prv_candidates") or []]
    entries.append((record["candidate"], DETECTION))
    out = []
    for source, kind in entries:
        assert source.get("jd") is not None, f"{object_id}: an epoch without jd"
        out.append(_values(EPOCHS, source, objectId=object_id, kind=kind, alert_jd=jd, alert_candid=candid))
    return out


def packet_forced(record: dict) -> list:
    """The values of each fp_hists entry, in packet order, with this alert as alert_jd, alert_candid."""
    jd, candid = alert_order(record)
    return [_values(FORCED, fp, objectId=record["objectId"], alert_candid=candid, alert_jd=jd)
            for fp in record.get("fp_hists") or []]


def packet_rows(table: str, record: dict) -> list:
    return packet_epochs(record) if table == "epochs" else packet_forced(record)


def _once(items) -> list:
    return list(dict.fromkeys(items))


@dataclasses.dataclass
class Reference:
    rows: dict  # table -> {version: values, the alert that first carried it as alert_*}, first carried first
    first_alert: dict  # table -> {version: store row of that alert}
    history: dict  # table -> per store row: its packet's versions, packet order, each once

    def objects(self, table: str) -> dict:
        """objectId -> set of versions of `table`."""
        by = collections.defaultdict(set)
        for version, values in self.rows[table].items():
            by[values["objectId"]].add(version)
        return by

    def latest(self, table: str) -> dict:
        """objectId -> the latest version of each of its keys: greatest (alert_jd,
        alert_candid); of two versions one packet carried, the first it carried."""
        best = {}
        for version, values in self.rows[table].items():  # first carried first
            order = (values["alert_jd"], values["alert_candid"])
            if key_of(version) not in best or order > best[key_of(version)][0]:
                best[key_of(version)] = (order, version)
        by = collections.defaultdict(set)
        for _, version in best.values():
            by[self.rows[table][version]["objectId"]].add(version)
        return by


def reference(records: list) -> Reference:
    """The light curves of `records`, the stored alerts in store order."""
    ref = Reference({t: {} for t in TABLES}, {t: {} for t in TABLES}, {t: [] for t in TABLES})
    for row, record in enumerate(records):
        for table in TABLES:
            carried = [(version_of(table, values), values) for values in packet_rows(table, record)]
            for version, values in carried:
                if version not in ref.rows[table]:
                    ref.rows[table][version] = values
                    ref.first_alert[table][version] = row
            ref.history[table].append(_once(v for v, _ in carried))
    return ref


# ----------------------------------------------------------------------------------------------
# the store's tables


def read_group(root, name: str) -> np.ndarray:
    """The table `lightcurves/NAME` (a group of columns) as one structured array, columns in the
    group's order, strings as `<U{longest}`."""
    group = root[f"lightcurves/{name}"]
    return ztfref.records({c: group[c][:] for c in group.attrs["columns"]})


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
    versions: dict  # table -> the version of each row

    def table(self, name: str) -> np.ndarray:
        return self.epochs if name == "epochs" else self.forced

    def history(self, name: str) -> tuple:
        """(start column, count column, history array) of `name`'s histories."""
        if name == "epochs":
            return self.alerts["history_start"], self.alerts["history_count"], self.history_epochs
        return self.alerts["forced_start"], self.alerts["forced_count"], self.history_forced


def row_versions(table: str, rows: np.ndarray) -> list:
    """The version of each row of a structured array of `table`'s columns."""
    names = [c.name for c in COLUMNS[table]]
    return [version_of(table, dict(zip(names, row))) for row in rows[names].tolist()]


def read_tables(store: Path) -> Tables:
    root = open_root(store)
    epochs, forced = read_group(root, "epochs"), read_group(root, "forced")
    return Tables(
        store, root, root["catalog"][:], epochs, forced, read_group(root, "objects"), read_group(root, "alerts"),
        root["lightcurves/history_epochs"][:], root["lightcurves/history_forced"][:],
        dict(root["lightcurves"].attrs), {"epochs": row_versions("epochs", epochs), "forced": row_versions("forced", forced)},
    )


def stored_records(catalog: np.ndarray, locate) -> list:
    """The packet of every catalog row, in store order; locate(source) -> path of the input."""
    return [ztfref.alert_from_file(str(locate(str(s)))).record for s in catalog["source"]]


def expected_rows(table: str, values: list) -> np.ndarray:
    return ztfref.expected_columns(COLUMNS[table], values)


# ----------------------------------------------------------------------------------------------
# the checks (each raises AssertionError naming what differs)


def _mismatches(actual: np.ndarray, expected: np.ndarray, columns, describe) -> list:
    problems = []
    for col in columns:
        for i in ztfref.field_mismatches(actual, expected, col.name):
            problems.append(f"{describe(i)} column {col.name}: store {actual[col.name][i]!r}, expected {expected[col.name][i]!r}")
    return problems


def same_rows(a: np.ndarray, b: np.ndarray, columns) -> bool:
    """Equal row for row in `columns` (NaN equals NaN)."""
    return len(a) == len(b) and not _mismatches(a, b, columns, str)


def _window(starts, counts, i) -> slice:
    return slice(int(starts[i]), int(starts[i]) + int(counts[i]))


def check_layout(t: Tables):
    """Each table is a group whose `columns` attribute lists its columns in schema order; each
    column a 1-D array of the table's length: numbers zstd + shuffle in chunks of about 1 MB,
    strings variable-length UTF-8 in chunks of 64 × the catalog's chunk rows; each named by its
    dimension, described, with its missing value (the schema's for epochs and forced; the index
    tables never miss a value, so theirs is only stated)."""
    chunk_rows = t.root["catalog"].chunks[0]
    for name, dimension in DIMENSIONS.items():
        if name in INDEX_COLUMNS:
            wanted, missing = INDEX_COLUMNS[name], {}
        else:
            wanted = {c.name: "str" if c.is_string else c.dtype for c in COLUMNS[name]}
            missing = {c.name: c.missing for c in COLUMNS[name]}
        folder = t.store / "lightcurves" / name
        assert ztfref.read_json(folder / ".zgroup") == {"zarr_format": 2}
        attrs = ztfref.read_json(folder / ".zattrs")
        assert attrs["columns"] == list(wanted) and isinstance(attrs["description"], str) and attrs["description"]
        assert not (folder / ".zarray").exists()
        lengths = set()
        for column, dtype in wanted.items():
            meta = ztfref.read_json(folder / column / ".zarray")
            lengths.add(meta["shape"][0])
            common = {"zarr_format": 2, "fill_value": None, "order": "C", "dimension_separator": "."}
            assert {k: meta[k] for k in common} == common, (name, column, meta)
            assert meta["compressor"]["id"] == "zstd" and len(meta["shape"]) == 1, (name, column, meta)
            if dtype == "str":
                assert (meta["dtype"], meta["filters"]) == ("|O", [{"id": "vlen-utf8"}]), (name, column, meta)
                assert meta["chunks"] == [chunk_rows * 64], (name, column, meta)
            else:
                size = np.dtype(dtype).itemsize
                assert (meta["dtype"], meta["filters"]) == (dtype, [{"id": "shuffle", "elementsize": size}]), (name, column)
                assert meta["chunks"] == [chunk_rows * 1024 // size], (name, column, meta)
            column_attrs = ztfref.read_json(folder / column / ".zattrs")
            assert column_attrs["_ARRAY_DIMENSIONS"] == [dimension], (name, column)
            assert isinstance(column_attrs["description"], str) and column_attrs["description"], (name, column)
            assert str(column_attrs["missing"]) == missing.get(column, str(column_attrs["missing"])), (name, column)
        assert len(lengths) == 1, f"{name}: columns of lengths {sorted(lengths)}"
    for name in ("history_epochs", "history_forced"):
        meta = ztfref.read_json(t.store / "lightcurves" / name / ".zarray")
        assert meta["dtype"] == "<i8" and len(meta["shape"]) == 1
        assert t.root[f"lightcurves/{name}"].dtype == np.dtype("<i8")
    assert set(t.epochs["kind"].tolist()) <= {DETECTION, UPPER_LIMIT}
    assert len(t.alerts) == len(t.catalog)


def check_no_repeats(t: Tables):
    """No value set of a key is stored twice (an identical one adds nothing)."""
    for name in TABLES:
        repeated = {k: n for k, n in collections.Counter(t.versions[name]).items() if n > 1}
        assert not repeated, f"{name}: {len(repeated)} versions repeat, e.g. {[key_of(v) for v in repeated][:5]}"


def check_versions(t: Tables, ref: Reference):
    """Each object's rows are the versions its stored packets carried, no more, no fewer."""
    for name in TABLES:
        have = collections.defaultdict(set)
        for version, object_id in zip(t.versions[name], t.table(name)["objectId"].tolist()):
            have[object_id].add(version)
        want = ref.objects(name)
        problems = []
        for object_id in sorted(set(have) | set(want)):
            missing, extra = want[object_id] - have[object_id], have[object_id] - want[object_id]
            if missing or extra:
                problems.append(f"{object_id}: missing {[key_of(v) for v in missing][:3]} ({len(missing)}), "
                                f"extra {[key_of(v) for v in extra][:3]} ({len(extra)})")
        assert not problems, f"{name}: {len(problems)} objects differ from the packets:\n" + "\n".join(problems[:20])


def check_values(t: Tables, ref: Reference):
    """Every row holds its version's values, and names the first stored alert that carried them
    (alert_jd, alert_candid)."""
    for name in TABLES:
        versions = t.versions[name]
        expected = expected_rows(name, [ref.rows[name][v] for v in versions])
        problems = _mismatches(t.table(name), expected, COLUMNS[name], lambda i: f"{name} row {i} {key_of(versions[i])}")
        assert not problems, f"{len(problems)} values differ:\n" + "\n".join(problems[:30])


def check_row_order(t: Tables, ref: Reference):
    """Rows are in input order, each alert's new rows together."""
    for name in TABLES:
        first = [ref.first_alert[name][v] for v in t.versions[name]]
        assert first == sorted(first), name


def check_object_index(t: Tables):
    assert set(t.objects["table"].tolist()) <= set(TABLES)
    for name in TABLES:
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


def coordinate_rows(root, name: str, rows: np.ndarray) -> np.ndarray:
    """Rows of table `name` read the documented way: one coordinate selection per column."""
    group = root[f"lightcurves/{name}"]
    return ztfref.records({c: group[c].get_coordinate_selection(rows) for c in group.attrs["columns"]})


def check_history_raw(t: Tables, ref: Reference):
    """Every catalog row's history windows list exactly the versions its packet carried (packet
    order, each once), and the rows read through get_coordinate_selection hold those values."""
    assert len(t.alerts) == len(t.catalog) == len(ref.history["epochs"])
    for name in TABLES:
        starts, counts_, carried = t.history(name)
        versions, want = t.versions[name], ref.history[name]
        problems, rows = [], []
        for i in range(len(t.alerts)):
            mine = carried[_window(starts, counts_, i)]
            got = [versions[r] for r in mine]
            if got != want[i]:
                problems.append(f"row {i} ({t.catalog['source'][i]}): {name} history {[key_of(v) for v in got][:3]}… "
                                f"({len(got)}) != packet {[key_of(v) for v in want[i]][:3]}… ({len(want[i])})")
            rows.append(mine)
        assert not problems, f"{len(problems)} {name} histories differ:\n" + "\n".join(problems[:20])
        flat = np.concatenate(rows)
        if len(flat):
            read = coordinate_rows(t.root, name, flat)
            expected = expected_rows(name, [ref.rows[name][versions[r]] for r in flat])
            problems = _mismatches(read, expected, COLUMNS[name], lambda i: f"{name} history entry {i} (row {flat[i]})")
            assert not problems, "\n".join(problems[:30])
        # One alert's history read the documented way: slice of history_*, then coordinate selection.
        for i in sorted({0, len(t.alerts) // 2, len(t.alerts) - 1}):
            window = t.root[f"lightcurves/history_{name}"][_window(starts, counts_, i)]
            if len(window):
                assert [versions[r] for r in window.tolist()] == want[i]
                assert same_rows(coordinate_rows(t.root, name, window), t.table(name)[window], COLUMNS[name])


def check_all(store: Path, locate, binary: Path) -> tuple[Tables, Reference]:
    """Every check of the store's light curves against the reference of its stored packets, and
    `verify`."""
    t = read_tables(store)
    ref = reference(stored_records(t.catalog, locate))
    check_layout(t)
    check_no_repeats(t)
    check_versions(t, ref)
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


def _differing_columns(table: str, a: dict, b: dict) -> set:
    return {c.name for c in COLUMNS[table] if c.name not in ALERT_COLUMNS and c.stored(a[c.name]) != c.stored(b[c.name])}


def test_reference_sees_the_data(real_lc, real_expectation):
    """The reference itself: the stored packets are the accepted inputs, and the data exercise
    what the tests rely on (upper limits, repeats across alerts, forced photometry, detections
    whose copies in two packets differ)."""
    t, ref = real_lc
    assert [str(s) for s in t.catalog["source"]] == [s for s, _ in real_expectation.rows]
    kinds = collections.Counter(v["kind"] for v in ref.rows["epochs"].values())
    assert kinds[DETECTION] > 1000 and kinds[UPPER_LIMIT] > 1000
    assert len(ref.rows["forced"]) == 10  # boom's fp_hists, the only 4.x alert
    carried = sum(len(h) for h in ref.history["epochs"])
    assert carried > len(ref.rows["epochs"]), "no epoch is carried by two alerts"
    by_key = collections.defaultdict(list)
    for version, values in ref.rows["epochs"].items():
        by_key[key_of(version)].append(values)
    revised = {k: v for k, v in by_key.items() if len(v) > 1}
    assert revised, "no detection carried with two value sets"
    differ = set().union(*(_differing_columns("epochs", *v[:2]) for v in revised.values()))
    # As documented: float rounding (xpos, ypos), isdiffpos 1 against t, the image path.
    assert differ and {"objectId", "kind", "candid", "jd", "fid"}.isdisjoint(differ), differ


def test_tables_are_groups_of_columns(real_lc):
    check_layout(real_lc[0])


def test_no_version_repeats(real_lc):
    check_no_repeats(real_lc[0])


def test_each_objects_rows_are_the_packets_versions(real_lc):
    check_versions(*real_lc)


def test_values_are_the_versions_the_packets_carried(real_lc):
    check_values(*real_lc)


def test_rows_follow_the_input_order(real_lc):
    check_row_order(*real_lc)


def test_object_index_covers_every_row_once(real_lc):
    check_object_index(real_lc[0])


def test_counts_match_info_and_attrs(real_lc, binary):
    check_counts(real_lc[0], binary)


def test_every_alerts_history_is_its_packet_raw_zarr(real_lc):
    check_history_raw(*real_lc)


def test_an_alerts_own_candidate_in_its_history_is_its_catalog_row(real_lc):
    """The version of an alert's own candidate that its history points at holds the candidate's
    values, as the catalog row does, even where a later packet carried other values for it."""
    t, _ = real_lc
    starts, counts_, carried = t.history("epochs")
    shared = [c for c in EPOCHS if c.name in t.catalog.dtype.names and c.name not in ("objectId", *ALERT_COLUMNS)]
    assert {"candid", "jd", "magpsf", "xpos", "isdiffpos"} <= {c.name for c in shared}
    later_versions = 0
    for i in range(len(t.catalog)):
        rows = carried[_window(starts, counts_, i)]
        own = [r for r in rows.tolist() if t.epochs["candid"][r] == t.catalog["candid"][i]]
        assert len(own) == 1, (i, own)
        row = t.epochs[own[0]]
        for col in shared:
            a, b = row[col.name], t.catalog[col.name][i]
            assert col.stored(a) == col.stored(b), (i, col.name, a, b)
        later_versions += int((t.epochs["candid"] == t.catalog["candid"][i]).sum()) - 1
    assert later_versions > 0, "no stored candidate was carried again with other values"


def test_verify_passes(real_default, binary):
    r = run(binary, ["verify", real_default.store], real_default.store.parent).check()
    assert "light curves" in r.stdout + r.stderr


def test_unstored_alerts_add_no_epoch(real_lc, real_expectation, data_root):
    """Rejected inputs that fastavro can read (JPEG and null cutouts) carry epochs; none of those
    that no stored alert carried is in the store."""
    t, ref = real_lc
    stored = {key_of(v) for v in t.versions["epochs"]}
    known = {key_of(v) for v in ref.rows["epochs"]}
    theirs = set()
    for source in real_expectation.rejects:
        try:
            record = ztfref.read_record((data_root.parent / source).read_bytes())
        except ztfref.BadAlert:
            continue
        theirs |= {key_of(version_of("epochs", v)) for v in packet_epochs(record)} - known
    assert len(theirs) > 100
    assert not theirs & stored


# ----------------------------------------------------------------------------------------------
# 3: the real folder in two appends


@dataclasses.dataclass
class Halves:
    first: list
    second: list
    store: Path
    after_first: Tables  # the tables as the first build committed them


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
    after_first = read_tables(store)
    run(binary, ["build", *inputs[split:], "-o", store, "--no-progress"], data_root.parent).check()
    return Halves(inputs[:split], inputs[split:], store, after_first)


def test_appended_halves_match_the_packets(real_halves, data_root, binary):
    t, ref = check_all(real_halves.store, lambda s: data_root.parent / s, binary)
    object_ids = t.catalog["objectId"].tolist()
    sources = t.catalog["source"].tolist()
    first = set(real_halves.first)
    both = {o for o, s in zip(object_ids, sources) if s in first} & {o for o, s in zip(object_ids, sources) if s not in first}
    assert both, "no object has alerts in both halves"
    # Several ranges per object after the append.
    assert len(t.objects) > len(set(t.objects["objectId"].tolist()))
    # The append rewrote no committed row, and added none that it repeated identically.
    before = real_halves.after_first
    for name in TABLES:
        assert same_rows(t.table(name)[: len(before.table(name))], before.table(name), COLUMNS[name]), name
        carried_again = set(v for h in ref.history[name][len(before.catalog):] for v in h) & set(before.versions[name])
        added = t.versions[name][len(before.table(name)):]
        assert not carried_again & set(added)
        assert name == "forced" or carried_again, "the second half repeats no epoch of the first"


def test_appended_halves_equal_the_one_shot_build(real_halves, real_lc):
    one, _ = real_lc
    halves = read_tables(real_halves.store)
    assert halves.catalog["source"].tolist() == one.catalog["source"].tolist()
    for name in TABLES:
        assert set(halves.versions[name]) == set(one.versions[name])
        # Rows are in input order, each alert's new rows together: the same table.
        assert same_rows(halves.table(name), one.table(name), COLUMNS[name])
    assert counts(halves) == counts(one)


# ----------------------------------------------------------------------------------------------
# 4: crafted 4.02 alerts revising forced photometry


@dataclasses.dataclass
class Crafted:
    folder: Path
    original: dict
    later: dict  # greater jd, revision A of the forced photometry
    earlier: dict  # smaller jd, revision B
    echo: dict  # greater jd still, carrying the later alert's fp_hists as they are

    def record(self, name: str) -> dict:
        return getattr(self, name.removesuffix(".avro"))


def craft(original: dict, candid: int, days: float, revision: int) -> dict:
    """A later (days > 0) or earlier alert of the same object: its own candidate at jd + days
    with a new candid; the original's prv_candidates, then the original's candidate as a
    prv_candidate (with another magpsf: another version of that detection), one new upper limit,
    one at the jd of an existing one in another filter (a new epoch), and the first upper limit
    again with another diffmaglim (a second version, carried in the same packet as the first);
    the original's fp_hists with fluxes revised (`revision` picks how), and one new forced epoch."""
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
        fp["forcediffimflux"] = (fp["forcediffimflux"] or 0.0) * (1 + revision) + 100.0 * revision + i
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
    later = craft(original, original["candid"] + 1, 1.0, revision=1)
    earlier = craft(original, original["candid"] + 2, -1.0, revision=2)
    echo = craft(original, original["candid"] + 3, 2.0, revision=1)
    echo["fp_hists"] = copy.deepcopy(later["fp_hists"])
    for name, record in (("later", later), ("earlier", earlier), ("echo", echo)):
        ztfref.write_alert(folder / f"{name}.avro", schema, record)
    return Crafted(folder, original, later, earlier, echo)


def _build_crafted(binary, crafted: Crafted, name: str, *nights) -> tuple[Path, list]:
    """Build `nights` (lists of file names in the crafted folder) as one build each, appending;
    the store and its tables after each build."""
    store = crafted.folder / f"{name}.zarr"
    assert not store.exists()
    after = []
    for night in nights:
        run(binary, ["build", *night, "-o", store, "--no-progress"], crafted.folder).check()
        after.append(read_tables(store))
    return store, after


def _forced_versions(record: dict) -> list:
    return [version_of("forced", v) for v in packet_forced(record)]


def _check_crafted(binary, crafted: Crafted, name: str, *nights):
    """The general checks, then explicitly: no committed row changes in a later build; each
    stored alert's forced history holds its own packet's values, and names the first stored
    alert that carried them; the latest version of each forced epoch is the latest alert's;
    the original candidate has one row per distinct value set."""
    store, after = _build_crafted(binary, crafted, name, *nights)
    t, ref = check_all(store, lambda s: crafted.folder / s, binary)
    for earlier_build in after[:-1]:
        for table in TABLES:
            committed = len(earlier_build.table(table))
            assert same_rows(t.table(table)[:committed], earlier_build.table(table), COLUMNS[table]), table
    stored = [crafted.record(n) for night in nights for n in night]
    first_carrier = {}
    for record in stored:  # store order is input order here: one file per alert
        for version in _forced_versions(record):
            first_carrier.setdefault(version, record)
    starts, counts_, carried = t.history("forced")
    for row, record in enumerate(stored):
        assert t.catalog["candid"][row] == record["candid"]
        mine = t.forced[carried[_window(starts, counts_, row)]]
        values = [{**v, "alert_jd": first_carrier[version_of("forced", v)]["candidate"]["jd"],
                   "alert_candid": first_carrier[version_of("forced", v)]["candid"]} for v in packet_forced(record)]
        assert same_rows(mine, expected_rows("forced", values), FORCED), f"forced history of {record['candid']}"
    assert len(t.forced) == len(first_carrier)
    # Latest: every forced epoch's values from the latest stored alert that carried it.
    latest = {}
    for record in sorted(stored, key=alert_order):
        latest.update({key_of(version_of("forced", v)): v for v in packet_forced(record)})
    for engine in ENGINES:
        lc = ztf2zarr.LightCurves(store, engine=engine)
        got = lc.curve(crafted.original["objectId"], "forced")
        assert len(got) == len(latest) and len(lc.curve(crafted.original["objectId"], "forced", versions="all")) == len(t.forced)
        want = sorted(latest.values(), key=lambda v: v["jd"])
        assert same_rows(got, expected_rows("forced", want), [c for c in FORCED if c.name not in ALERT_COLUMNS]), engine
    # The original candidate: one row per distinct value set (the original's own, and the
    # crafted alerts' prv_candidate copy with magpsf + 1, the same in every crafted alert).
    original = crafted.original
    crafted_stored = [r for r in stored if r is not original]
    detections = t.epochs[t.epochs["candid"] == original["candid"]]
    magpsf = {original["candidate"]["magpsf"]} if original in stored else set()
    magpsf |= {original["candidate"]["magpsf"] + 1.0} if crafted_stored else set()
    assert sorted(detections["magpsf"].tolist()) == sorted(np.float32(m) for m in magpsf)
    # Each crafted alert adds its candidate and its new upper limit; the upper limit in the
    # other filter, the second version of the first upper limit and the candidate's copy are the
    # same in every crafted alert.
    own = len(_once(version_of("epochs", v) for v in packet_epochs(original)))
    assert len(t.epochs) == own + 2 * len(crafted_stored) + 3
    first_limit = next(p for p in original["prv_candidates"] if p.get("candid") is None)
    same_jd = t.epochs[(t.epochs["kind"] == UPPER_LIMIT) & (t.epochs["jd"] == first_limit["jd"])]
    assert sorted(same_jd["fid"].tolist()) == sorted([first_limit["fid"]] * 2 + [3 - first_limit["fid"]])
    assert sorted(same_jd[same_jd["fid"] == first_limit["fid"]]["diffmaglim"].tolist()) == [
        np.float32(first_limit["diffmaglim"]), np.float32(first_limit["diffmaglim"] + 0.5)]
    assert sorted(t.catalog["candid"].tolist()) == sorted(r["candid"] for r in stored)
    return t, ref


@pytest.mark.parametrize("order", ["original-first", "later-first"])
def test_later_alert_adds_its_forced_values_in_one_build(binary, crafted, order):
    names = ["original.avro", "later.avro"] if order == "original-first" else ["later.avro", "original.avro"]
    t, _ = _check_crafted(binary, crafted, f"later-one-build-{order}", names)
    assert len(t.forced) == 2 * len(crafted.original["fp_hists"]) + 1


def test_later_alert_adds_its_forced_values_on_append(binary, crafted):
    t, _ = _check_crafted(binary, crafted, "later-append", ["original.avro"], ["later.avro"])
    assert (t.forced["alert_candid"][: len(crafted.original["fp_hists"])] == crafted.original["candid"]).all()


def test_earlier_alert_adds_its_forced_values_in_one_build(binary, crafted):
    t, _ = _check_crafted(binary, crafted, "earlier-one-build", ["original.avro", "earlier.avro"])
    assert len(t.forced) == 2 * len(crafted.original["fp_hists"]) + 1


def test_earlier_alert_adds_its_forced_values_on_append(binary, crafted):
    t, _ = _check_crafted(binary, crafted, "earlier-append", ["original.avro"], ["earlier.avro"])
    assert set(t.forced["alert_candid"].tolist()) == {crafted.original["candid"], crafted.earlier["candid"]}


def test_an_older_night_appended_after_a_newer_one(binary, crafted):
    t, _ = _check_crafted(binary, crafted, "three-appends", ["original.avro"], ["later.avro"], ["earlier.avro"])
    assert len(t.forced) == 3 * len(crafted.original["fp_hists"]) + 2


def test_identical_forced_values_add_no_row_on_append(binary, crafted):
    """An alert that carries forced values already stored adds no forced row; its history points
    at the rows the earlier alert added, which name that alert."""
    t, _ = _check_crafted(binary, crafted, "echo-append", ["original.avro", "later.avro"], ["echo.avro"])
    assert len(t.forced) == 2 * len(crafted.original["fp_hists"]) + 1
    starts, counts_, carried = t.history("forced")
    echo_rows = carried[_window(starts, counts_, 2)]
    assert len(echo_rows) == len(crafted.echo["fp_hists"])
    assert (t.forced["alert_candid"][echo_rows] == crafted.later["candid"]).all()


# ----------------------------------------------------------------------------------------------
# 5: readers: pandas, xarray, dask, the package's LightCurves


@pytest.fixture(scope="session", params=["one-shot", "halves"])
def lc_store(request, real_lc, real_halves, data_root):
    """(store, tables, reference) of the real folder built at once, and in two appends."""
    if request.param == "one-shot":
        t, ref = real_lc
    else:
        t = read_tables(real_halves.store)
        ref = reference(stored_records(t.catalog, lambda s: data_root.parent / s))
    return t.store, t, ref


def _most_rows(t: Tables) -> str:
    return collections.Counter(t.epochs["objectId"].tolist()).most_common(1)[0][0]


def test_pandas_reads_the_columns(lc_store):
    import pandas as pd

    store, t, _ = lc_store
    root = open_root(store)
    columns = [c.name for c in EPOCHS]
    epochs = pd.DataFrame({c: root[f"lightcurves/epochs/{c}"][:] for c in columns})
    assert list(epochs.columns) == columns and len(epochs) == len(t.epochs)
    assert epochs["kind"].value_counts().to_dict() == dict(collections.Counter(t.epochs["kind"].tolist()))
    assert epochs["magpsf"].dtype == np.float32 and epochs["candid"].dtype == np.int64
    # One object's curve the way docs/lightcurves.md shows it, against the reader's (every version).
    index = pd.DataFrame({c: root[f"lightcurves/objects/{c}"][:] for c in INDEX_COLUMNS["objects"]})
    object_id = _most_rows(t)
    one = index[(index.objectId == object_id) & (index.table == "epochs")]
    curve = pd.concat([epochs.iloc[s : s + n] for s, n in zip(one.start, one["count"])]).sort_values("jd", kind="stable")
    assert same_rows(ztfref.records({c: curve[c].to_numpy() for c in columns}),
                     ztf2zarr.curve(store, object_id, versions="all"), EPOCHS)


def test_xarray_opens_each_table_as_a_dataset(lc_store):
    import xarray as xr  # both test environments have it (2025.1.2 is the last to read zarr-python 2)

    store, t, _ = lc_store
    for name in TABLES:
        ds = xr.open_zarr(store, group=f"lightcurves/{name}")
        assert ds.sizes == {DIMENSIONS[name]: len(t.table(name))}
        assert ds.attrs["columns"] == [c.name for c in COLUMNS[name]]
        frame = ds.to_dataframe()[ds.attrs["columns"]]
        for col in COLUMNS[name]:
            values = frame[col.name].to_numpy()
            if col.is_string:
                assert all(isinstance(v, str) for v in values.tolist()), (name, col.name)
            else:
                assert values.dtype == col.np_dtype, (name, col.name, values.dtype)
        assert same_rows(ztfref.records({c: frame[c].to_numpy() for c in frame.columns}), t.table(name), COLUMNS[name])


def test_dask_reads_one_column(lc_store):
    import dask.array as da

    store, t, _ = lc_store
    root = open_root(store)
    magpsf = da.from_zarr(str(store), component="lightcurves/epochs/magpsf")
    assert magpsf.shape == (len(t.epochs),) and magpsf.dtype == np.float32
    assert np.array_equal(magpsf.compute(), t.epochs["magpsf"], equal_nan=True)
    fid = da.from_zarr(str(store), component="lightcurves/epochs/fid")
    r_band = magpsf[fid == 2].compute()
    assert np.array_equal(r_band, t.epochs["magpsf"][t.epochs["fid"] == 2], equal_nan=True)
    history = da.from_zarr(root["lightcurves/history_epochs"])
    assert np.array_equal(history.compute(), t.history_epochs)


def _joined(parts: list) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0)


def _reference_curve(ref: Reference, table: str, versions: set) -> np.ndarray:
    """The rows of `versions`, in the reader's order: by jd, equal jd in store (first-carried) order."""
    order = {v: i for i, v in enumerate(ref.rows[table])}
    chosen = sorted(versions, key=lambda v: (ref.rows[table][v]["jd"], order[v]))
    return expected_rows(table, [ref.rows[table][v] for v in chosen])


@pytest.mark.parametrize("engine", ENGINES)
def test_reader_curve_of_every_object(lc_store, engine):
    """curve() of every object and table: with versions="all", every version the packets carried;
    with "latest", one per key, the one first carried by the latest alert; sorted by jd."""
    store, t, ref = lc_store
    lc = ztf2zarr.LightCurves(store, engine=engine)
    assert lc.columnar and lc.columns("epochs") == tuple(c.name for c in EPOCHS)
    with_rows = set(t.epochs["objectId"].tolist()) | set(t.forced["objectId"].tolist())
    assert lc.objects.tolist() == sorted(with_rows)
    assert set(lc.objects.tolist()) == set(ref.objects("epochs")) | set(ref.objects("forced"))
    fewer = 0
    for name in TABLES:
        everything, latest = ref.objects(name), ref.latest(name)
        problems = []
        for object_id in lc.objects.tolist():
            for versions, want in (("all", everything[object_id]), ("latest", latest[object_id])):
                got = lc.curve(object_id, name, versions=versions)
                if not same_rows(got, _reference_curve(ref, name, want), COLUMNS[name]):
                    problems.append(f"{name} {object_id} versions={versions}: {len(got)} rows, want {len(want)}")
            fewer += len(latest[object_id]) < len(everything[object_id])
        assert not problems, f"{len(problems)} curves differ:\n" + "\n".join(problems[:20])
    assert fewer > 0, "no object has two versions of a key"
    assert sum(len(lc.curve(o, "forced", versions="all")) for o in lc.objects.tolist()) == len(t.forced) > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_reader_reads_only_the_columns_asked_for(lc_store, engine, monkeypatch):
    """columns= gives exactly those columns, equal to the whole rows' (in the order asked); the
    direct engine fetches no chunk of another column but those it needs to pick versions."""
    store, t, _ = lc_store
    object_id = _most_rows(t)
    lc = ztf2zarr.LightCurves(store, engine=engine)
    whole = lc.curve(object_id)
    some = lc.curve(object_id, columns=["magpsf", "jd", "isdiffpos"])
    assert some.dtype.names == ("magpsf", "jd", "isdiffpos") and some.dtype["isdiffpos"].kind == "U"
    assert same_rows(some, whole, [c for c in EPOCHS if c.name in some.dtype.names])
    history = lc.histories(range(len(t.catalog)), columns=["fid"])
    assert [h.dtype.names for h in history] == [("fid",)] * len(t.catalog)
    assert np.array_equal(_joined(history)["fid"], _joined(lc.histories(range(len(t.catalog))))["fid"])
    if engine == "direct":
        fresh = ztf2zarr.LightCurves(store, engine="direct")
        fetched = []
        files = fresh.store._files
        real_get_many = files.get_many
        monkeypatch.setattr(files, "get_many", lambda keys: fetched.extend(keys) or real_get_many(keys))
        fresh.curve(object_id, columns=["magpsf"])
        fresh.history(0, columns=["magpsf"])
        epochs_columns = {k.split("/")[2] for k in fetched if k.startswith("lightcurves/epochs/")}
        assert epochs_columns == {"magpsf", "jd", "kind", "candid", "fid", *ALERT_COLUMNS}, epochs_columns


@pytest.mark.parametrize("engine", ENGINES)
def test_reader_history_of_every_alert(lc_store, engine):
    """history(), history_rows() of every catalog row and histories() of all: its packet's
    versions in packet order, each once, with their values."""
    store, t, ref = lc_store
    lc = ztf2zarr.LightCurves(store, engine=engine)
    n = len(t.catalog)
    for name in TABLES:
        starts, counts_, carried = t.history(name)
        want = ref.history[name]
        flat = [v for row in want for v in row]
        expected = expected_rows(name, [ref.rows[name][v] for v in flat])
        windows = [carried[_window(starts, counts_, row)] for row in range(n)]
        many = lc.histories(range(n), name)
        assert len(many) == n and [len(h) for h in many] == [len(w) for w in want]
        readings = {"histories": _joined(many)}
        rows = [lc.history_rows(row, name) for row in range(n)]
        assert all(r.dtype == np.int64 for r in rows)
        assert [r.tolist() for r in rows] == [w.tolist() for w in windows]
        readings["history"] = _joined([lc.history(row, name) for row in range(n)])
        for how, got in readings.items():
            assert row_versions(name, got) == flat, f"{name} {how}: versions differ from the packets'"
            problems = _mismatches(got, expected, COLUMNS[name], lambda i: f"{name} {how} entry {i}")
            assert not problems, f"{len(problems)} values differ:\n" + "\n".join(problems[:20])
    assert same_rows(lc.history(-1), lc.history(n - 1), EPOCHS)


@pytest.mark.parametrize("engine", ENGINES)
def test_module_functions_and_errors(real_lc, engine):
    t, ref = real_lc
    store = t.store
    boom_row = next(i for i, s in enumerate(t.catalog["source"].tolist()) if s.endswith(BOOM))
    object_id = str(t.catalog["objectId"][boom_row])
    lc = ztf2zarr.LightCurves(store, engine=engine)
    assert same_rows(ztf2zarr.curve(store, object_id, engine=engine), lc.curve(object_id), EPOCHS)
    assert same_rows(ztf2zarr.curve(store, object_id, table="forced", engine=engine), lc.curve(object_id, "forced"), FORCED)
    assert same_rows(ztf2zarr.curve(store, object_id, columns=["jd"], versions="all", engine=engine),
                     lc.curve(object_id, versions="all"), EPOCHS[3:4])
    assert len(lc.curve(object_id, "forced")) == 10
    assert same_rows(ztf2zarr.history(store, boom_row, engine=engine), lc.history(boom_row), EPOCHS)
    forced = ztf2zarr.history(store, boom_row, table="forced", engine=engine)
    assert row_versions("forced", forced) == ref.history["forced"][boom_row] and len(forced) == 10
    assert ztf2zarr.history(store, boom_row, columns=["magpsf"], engine=engine).dtype.names == ("magpsf",)
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
                 lambda: ztf2zarr.history(store, 0, table="epoch", engine=engine),
                 lambda: lc.curve(object_id, versions="first"), lambda: lc.curve(object_id, columns=["magpsf", "flux"]),
                 lambda: lc.history(0, "forced", columns=["kind"])):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize("relative", [False, True], ids=["absolute-jd", "relative-jd"])
def test_batches_carry_each_samples_own_history(lc_store, relative):
    """batches(history=…) gives each sample the most recent epochs of its own packet's history,
    sorted by jd, padded with zeros, with its length and mask; jd − the alert's jd with
    history_relative_time. Every row comes out once per epoch, as without history."""
    store, t, ref = lc_store
    columns, length = ("jd", "fid", "magpsf", "diffmaglim"), 8
    seen, lengths = [], set()
    for batch in ztf2zarr.batches(store, batch_size=64, seed=1, history=columns, history_len=length,
                                  history_relative_time=relative):
        size = len(batch["row"])
        assert batch["history"].shape == (size, length, len(columns)) and batch["history"].dtype == np.float32
        assert batch["history_mask"].shape == (size, length) and batch["history_mask"].dtype == bool
        assert "jd" not in batch  # read for relative time only, not handed out
        for i, row in enumerate(batch["row"].tolist()):
            carried = [ref.rows["epochs"][v] for v in ref.history["epochs"][row]]
            recent = sorted(carried, key=lambda v: v["jd"])[-length:]  # stable: packet order at equal jd
            n = len(recent)
            assert batch["history_length"][i] == n and batch["history_mask"][i].tolist() == [True] * n + [False] * (length - n)
            alert_jd = float(t.catalog["jd"][row])
            want = np.zeros((length, len(columns)), np.float32)
            for j, name in enumerate(columns):
                want[:n, j] = [v[name] - alert_jd if relative and name == "jd" else v[name] for v in recent]
            assert np.array_equal(batch["history"][i], want, equal_nan=True), row
            assert (batch["history"][i, :n, 0] <= (0 if relative else np.float32(alert_jd))).all()  # nothing from its future
            lengths.add(n)
        seen += batch["row"].tolist()
    assert sorted(seen) == list(range(len(t.catalog)))
    assert length in lengths and min(lengths) < length, lengths


def test_batches_history_refuses_what_it_cannot_give(lc_store, tmp_path, binary, data_root):
    store, _, _ = lc_store
    for options in ({"history": ["kind"]}, {"history": ["flux"]}, {"history": True, "history_len": 0}, {"history": []}):
        with pytest.raises(ValueError):
            next(ztf2zarr.batches(store, **options))
    assert next(ztf2zarr.batches(store, history=True))["history"].shape[1:] == (64, len(ztf2zarr.DEFAULT_HISTORY))
    plain = tmp_path / "plain.zarr"
    run(binary, ["build", NIGHT_1, "-o", plain, "--no-progress", "--no-lightcurves"], data_root).check()
    assert "history" not in next(ztf2zarr.batches(plain))
    with pytest.raises(ValueError, match="no light curves"):
        next(ztf2zarr.batches(plain, history=True))


# ----------------------------------------------------------------------------------------------
# 6: a store of the previous release (one structured array per table)


def previous_release(store: Path, into: Path) -> Path:
    """A copy of `store` with its light-curve tables as the previous release wrote them: one
    structured array per table, strings fixed width, and no alert_jd, alert_candid in epochs
    (that release had none); consolidated metadata to match."""
    shutil.copytree(store, into)
    root = open_root(store)
    consolidated = ztfref.read_json(into / ".zmetadata")
    metadata = consolidated["metadata"]
    for name in DIMENSIONS:
        table = read_group(root, name)
        if name == "epochs":
            table = table[[n for n in table.dtype.names if n not in ALERT_COLUMNS]]
        folder = into / "lightcurves" / name
        shutil.rmtree(folder)
        for key in [k for k in metadata if k.startswith(f"lightcurves/{name}/")]:
            del metadata[key]
        zarray = {"zarr_format": 2, "shape": [len(table)], "chunks": [root["catalog"].chunks[0]],
                  "dtype": [[n, table.dtype[n].str] for n in table.dtype.names], "compressor": {"id": "zstd", "level": 1},
                  "fill_value": None, "order": "C", "filters": None, "dimension_separator": "."}
        zattrs = {"_ARRAY_DIMENSIONS": [DIMENSIONS[name]]}
        write_array(folder, zarray, zattrs, np.ascontiguousarray(table.astype(np.dtype([tuple(f) for f in zarray["dtype"]]))))
        metadata[f"lightcurves/{name}/.zarray"], metadata[f"lightcurves/{name}/.zattrs"] = zarray, zattrs
    (into / ".zmetadata").write_text(json.dumps(consolidated))
    return into


def write_array(folder: Path, zarray: dict, zattrs: dict, values: np.ndarray):
    """A 1-D Zarr v2 array written file by file (zstd chunks, the last one padded with zeros)."""
    import numcodecs

    folder.mkdir(parents=True)
    (folder / ".zarray").write_text(json.dumps(zarray))
    (folder / ".zattrs").write_text(json.dumps(zattrs))
    size = zarray["chunks"][0]
    for i in range(-(-len(values) // size)):
        chunk = np.zeros(size, dtype=values.dtype)
        part = values[i * size : (i + 1) * size]
        chunk[: len(part)] = part
        (folder / str(i)).write_bytes(numcodecs.Zstd(level=1).encode(chunk.tobytes()))


@pytest.fixture(scope="session")
def old_store(real_halves, tmp_path_factory) -> Path:
    return previous_release(real_halves.store, tmp_path_factory.mktemp("lc-previous") / "previous.zarr")


@pytest.mark.parametrize("engine", ENGINES)
def test_reader_reads_a_previous_release_store(old_store, real_halves, engine):
    """The same calls give the same rows on the previous release's layout (whose epochs have no
    alert columns, so every row of it is its own version)."""
    new = ztf2zarr.LightCurves(real_halves.store, engine=engine)
    old = ztf2zarr.LightCurves(old_store, engine=engine)
    assert not old.columnar and old.columns("epochs") == tuple(c.name for c in EPOCHS if c.name not in ALERT_COLUMNS)
    assert old.objects.tolist() == new.objects.tolist()
    kept = [c for c in EPOCHS if c.name not in ALERT_COLUMNS]
    for object_id in new.objects.tolist():
        assert same_rows(old.curve(object_id), new.curve(object_id, versions="all"), kept), object_id
        assert same_rows(old.curve(object_id, "forced"), new.curve(object_id, "forced"), FORCED), object_id
        assert old.curve(object_id, columns=["jd", "fid"]).dtype.names == ("jd", "fid")
    rows = range(new.rows)
    for name, columns in (("epochs", kept), ("forced", FORCED)):
        assert same_rows(_joined(old.histories(rows, name)), _joined(new.histories(rows, name)), columns), name
    assert [len(h) for h in old.histories(rows, columns=["magpsf"])] == [len(h) for h in new.histories(rows)]


def test_writing_to_a_previous_release_store_is_refused(old_store, binary, data_root, tmp_path):
    """An append to a store of the previous layout stops before writing, and says to rebuild."""
    store = shutil.copytree(old_store, tmp_path / "previous.zarr")
    before = local_files(store)
    r = run(binary, ["build", NIGHT_2, "-o", store, "--no-progress"], data_root)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert re.search(r"earlier ztf2zarr", r.stderr, re.I) and re.search(r"build a new store", r.stderr, re.I), r.stderr
    assert local_files(store) == before


#: A store written by the previous release itself (tests/fixtures/README.md says how).
PREVIOUS_RELEASE_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "structured-lightcurves.zarr"


@pytest.mark.parametrize("engine", ENGINES)
def test_reader_reads_the_store_the_previous_release_wrote(engine, tmp_path):
    """The fixture made by the previous release's binary reads through the same calls: every
    object's curve, and every alert's history exactly as long as its entries say."""
    store = shutil.copytree(PREVIOUS_RELEASE_FIXTURE, tmp_path / "fixture.zarr")
    lc = ztf2zarr.LightCurves(store, engine=engine)
    assert not lc.columnar and lc.objects.size > 0
    root = open_root(store)
    epochs = root["lightcurves/epochs"][:]
    for object_id in lc.objects.tolist():
        curve = lc.curve(object_id, columns=["jd", "magpsf"])
        assert curve.dtype.names == ("jd", "magpsf") and np.all(np.diff(curve["jd"]) >= 0)
        assert len(curve) == int(np.sum(epochs["objectId"] == object_id))
    alerts = root["lightcurves/alerts"][:]
    histories = lc.histories(range(lc.rows))
    assert [len(h) for h in histories] == alerts["history_count"].tolist()
    assert all(set(h["objectId"].tolist()) <= {oid} for h, oid in zip(histories, root["catalog"][:]["objectId"].tolist()))


# ----------------------------------------------------------------------------------------------
# 7: --no-lightcurves


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
# 8: verify notices a damaged light-curve table


def _damaged(binary, store: Path, pattern: str):
    r = run(binary, ["verify", store], store.parent)
    assert r.returncode != 0, r.stdout
    assert re.search(pattern, r.stdout + r.stderr), r.stdout + r.stderr


def test_verify_finds_a_repeated_epoch(binary, data_root, tmp_path):
    import zarr

    store = tmp_path / "repeated.zarr"
    run(binary, ["build", NIGHT_1, "-o", store, "--no-progress"], data_root).check()
    run(binary, ["verify", store], tmp_path).check()
    for column in open_root(store)["lightcurves/epochs"].attrs["columns"]:
        values = zarr.open_array(str(store / "lightcurves" / "epochs" / column), mode="r+")
        values[1] = values[0]  # row 1 now repeats row 0, value for value
    _damaged(binary, store, r"repeat")


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
