"""Rubin (LSST) stores against independent decoders, and the Python reader on them.

The real alerts of $LSST_ALERTS (boom's one, schema 9.0, and Fink's 20, schema 10.0, as single
Confluent-framed messages and as one Avro container) and its synthetic `fake/<v>.avro` (one per
schema 7.0 … 11.0, null cutouts) are decoded with fastavro and the published lsst/alert_packet
schemas of the data folder, and their cutouts with astropy (ztfref.lsst_*). Checked: every
catalog value of every alert (every diaSource field, diaObject_*, ssSource_*, the alert-level
fields; floats bit for bit, null as the column's missing value, booleans 1/0/255); every stamp
and variance pixel for stamp sizes 30, 31 and 45, with the stamp flags; the container and the
single messages giving the same store; the light-curve tables against the packets' histories;
and `batches`, `LightCurves`, `open_dataset` and `plot` on the Rubin store.
"""

from __future__ import annotations

import io
import math

import matplotlib.image
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

import ztf2zarr
import ztfref
from conftest import open_root
from ztf2zarr import plot

FAKE_VERSIONS = ("7.0", "7.1", "7.2", "7.3", "7.4", "8.0", "9.0", "10.0", "11.0")
BANDS = "ugrizy"


# ---- the alerts, decoded independently ----


@pytest.fixture(scope="module")
def singles(lsst_root) -> list:
    """The 21 real alerts as fastavro decodes their single messages (boom, then Fink, by name)."""
    paths = sorted((lsst_root / "boom").glob("*.avro")) + sorted((lsst_root / "fink-v10.0").glob("*.avro"))
    assert len(paths) == 21, f"{lsst_root}: expected 21 real single-message alerts, found {len(paths)}"
    alerts = [a for p in paths for a in ztfref.lsst_read(p, lsst_root)]
    assert all(a.framed for a in alerts)
    return alerts


@pytest.fixture(scope="module")
def container_alerts(lsst_root) -> list:
    alerts = ztfref.lsst_read(lsst_root / "fink-v10.0-container" / "alerts.avro", lsst_root)
    assert len(alerts) == 20 and not any(a.framed for a in alerts)
    return alerts


def _id(alert) -> int:
    return int(alert.record["diaSource"]["diaSourceId"])


class Opened:
    """A built store read with zarr-python (independent of the package's reader)."""

    def __init__(self, build):
        self.path = build.store
        self.root = open_root(build.store)
        self.catalog = self.root["catalog"][:]
        self.stamps = np.asarray(self.root["stamps"][:])
        self.variance = np.asarray(self.root["variance"][:]) if "variance" in self.root else None
        ids = self.catalog["diaSourceId"]
        self.row = {int(i): r for r, i in enumerate(ids)}
        assert len(self.row) == len(ids), "diaSourceId is not unique in the catalog"


@pytest.fixture(scope="module")
def real(lsst_real) -> Opened:
    return Opened(lsst_real)


def _build(builder, lsst_root, name, inputs, *options):
    return builder.build(name, [f"{lsst_root.name}/{i}" for i in inputs], *options, cwd=lsst_root.parent)


# ---- the store as a whole ----


def test_real_store_holds_each_alert_once(real, singles, lsst_real):
    assert real.root.attrs["survey"] == "lsst"
    assert len(real.catalog) == 21
    assert sorted(real.row) == sorted(_id(a) for a in singles)
    for alert in singles:
        row = real.catalog[real.row[_id(alert)]]
        assert row["schema_version"] == alert.version
        assert row["source"] == f"lsst-alerts/{alert.path.parent.name}/{alert.path.name}"
        assert row["label"] == "" and row["label_code"] == -1
    assert {a.version for a in singles} == {"9.0", "10.0"}
    assert real.stamps.shape == (21, 3, 30, 30) and real.stamps.dtype == np.float32
    assert real.variance is not None and real.variance.shape == real.stamps.shape and real.variance.dtype == np.float32


def test_catalog_layout_is_the_schema_tsv(real):
    columns = ztfref.lsst_catalog_columns()
    assert [(c.name, np.dtype(c.dtype)) for c in columns] == [(n, real.catalog.dtype.fields[n][0]) for n in real.catalog.dtype.names]
    assert real.catalog.dtype.names[0] == "diaSourceId"
    for c in columns:  # diaSource and alert fields by their own names, the others prefixed
        if c.source != "derived":
            record, field = c.source.split(".", 1)
            assert c.name == (field if record in ("diaSource", "alert") else f"{record}_{field}"), c
    missing = real.root.attrs["ztf2zarr"]["missing_values"]
    for c in columns:
        if c.name in missing:
            assert missing[c.name] == c.missing, c.name


def _catalog_mismatches(store: Opened, alerts) -> list:
    """Every (diaSourceId, column, stored, expected) where the catalog differs from the packet."""
    columns = [c for c in ztfref.lsst_catalog_columns() if c.source != "derived"]
    names = set(store.catalog.dtype.names)
    bad = []
    for alert in alerts:
        record = alert.record
        row = store.catalog[store.row[_id(alert)]]
        for column in columns:
            expected = ztfref.lsst_value(column, ztfref.lsst_field(column, record))
            if not ztfref.same_value(row[column.name], expected):
                bad.append((_id(alert), column.name, row[column.name], expected))
        # Every field the packet has is a column (the records the catalog flattens, with prefixes).
        for field in record["diaSource"]:
            if field not in names:
                bad.append((_id(alert), f"diaSource.{field}", "no column", None))
        for record_name in ("diaObject", "ssSource"):
            for field in record.get(record_name) or {}:
                if f"{record_name}_{field}" not in names:
                    bad.append((_id(alert), f"{record_name}.{field}", "no column", None))
        for field in record:
            if field not in ztfref.LSST_NOT_ALERT_COLUMNS and field not in names:
                bad.append((_id(alert), f"alert.{field}", "no column", None))
    return bad


def test_every_catalog_value_equals_fastavro(real, singles):
    bad = _catalog_mismatches(real, singles)
    assert not bad, f"{len(bad)} catalog values differ from the packets, e.g. {bad[:10]}"


def test_the_checks_see_nan_null_and_every_record(real, singles):
    """The comparison covers what it should: boom's NaN fields, nulls, a null diaObject with an
    ssSource (Solar System alerts), booleans, and all of diaObject_* and ssSource_*."""
    boom = next(a for a in singles if a.version == "9.0").record
    nan_fields = [k for k, v in boom["diaSource"].items() if isinstance(v, float) and math.isnan(v)]
    assert len(nan_fields) >= 20, "the boom alert should carry NaN diaSource fields"
    row = real.catalog[real.row[boom["diaSource"]["diaSourceId"]]]
    assert all(np.isnan(row[f]) for f in nan_fields)
    sso = [a.record for a in singles if a.record.get("ssSource") is not None]
    assert len(sso) == 2 and all(a["diaObject"] is None for a in sso)
    for alert in sso:
        stored = real.catalog[real.row[alert["diaSource"]["diaSourceId"]]]
        assert stored["diaObject_diaObjectId"] == np.iinfo(np.int64).min
        assert stored["ssSource_ssObjectId"] == alert["ssSource"]["ssObjectId"]
    bools = [c for c in ztfref.lsst_catalog_columns() if c.dtype == "|u1" and c.source != "derived"]
    values = np.concatenate([real.catalog[c.name] for c in bools])
    assert set(np.unique(values)) <= {0, 1, 255} and {0, 1, 255} <= set(np.unique(values))


# ---- stamps and variance ----


@pytest.fixture(scope="module", params=[30, 31, 45], ids=lambda s: f"size{s}")
def sized(request, builder, lsst_root, lsst_real):
    size = request.param
    if size == 30:
        return size, Opened(lsst_real)
    return size, Opened(_build(builder, lsst_root, f"lsst-real-{size}", ["boom", "fink-v10.0"], "--stamp-size", str(size)))


def test_stamps_and_variance_equal_astropy(sized, singles):
    size, store = sized
    assert store.stamps.shape == (21, 3, size, size)
    assert store.root.attrs["ztf2zarr"]["stamp_size"] == size
    flags_seen = set()
    for alert in singles:
        r = store.row[_id(alert)]
        stamps, variance, flags = ztfref.lsst_stamps(alert.record, size)
        np.testing.assert_array_equal(store.stamps[r], stamps, err_msg=f"stamps of {_id(alert)} (size {size})")
        np.testing.assert_array_equal(store.variance[r], variance, err_msg=f"variance of {_id(alert)} (size {size})")
        assert store.stamps[r].tobytes() == stamps.tobytes() and store.variance[r].tobytes() == variance.tobytes()
        assert store.catalog["stamp_flags"][r] == flags, f"stamp_flags of {_id(alert)} (size {size})"
        flags_seen.add(flags)
    # The real cutouts are 30×30 around the source: 30 is the cutout, larger sizes are padded
    # (31: one row and one column of each plane; 45: 15 of each).
    assert flags_seen == ({0} if size == 30 else {ztfref.LSST_FLAG_PADDED})
    expected_fill = {30: 0, 31: 31 * 31 - 30 * 30, 45: 45 * 45 - 30 * 30}[size]
    for alert in singles:
        stamps, _, _ = ztfref.lsst_stamps(alert.record, size)
        assert ((stamps == 0).reshape(3, -1).sum(axis=1) == expected_fill).all(), _id(alert)


def test_size_30_is_the_whole_cutout(real, singles):
    """On the real 30×30 cutouts the default window is the cutout itself, and the variance its
    UNCERT image (the rule, checked directly with astropy)."""
    from astropy.io import fits

    for alert in singles:
        r = real.row[_id(alert)]
        for channel, name in enumerate(ztfref.LSST_CHANNELS):
            with fits.open(io.BytesIO(alert.record[name])) as hdul:
                np.testing.assert_array_equal(real.stamps[r, channel], hdul[0].data.astype(np.float32))
                np.testing.assert_array_equal(real.variance[r, channel], hdul["UNCERT"].data.astype(np.float32))


# ---- the fake alerts: null cutouts ----


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_fake_alert_builds_with_no_cutout_flag(version, builder, lsst_root):
    path = lsst_root / "fake" / f"{version}.avro"
    assert path.is_file(), f"{path} not found"
    store = Opened(_build(builder, lsst_root, f"lsst-fake-{version}", [f"fake/{version}.avro"]))
    (alert,) = ztfref.lsst_read(path, lsst_root)
    assert alert.version == version
    assert all(alert.record.get(ch) is None for ch in ztfref.LSST_CHANNELS)
    assert len(store.catalog) == 1
    row = store.catalog[0]
    assert row["schema_version"] == version
    assert row["stamp_flags"] & ztfref.LSST_FLAG_NO_CUTOUT
    assert (store.stamps == 0).all() and (store.variance == 0).all()
    assert store.root.attrs["survey"] == "lsst"
    bad = _catalog_mismatches(store, [alert])
    assert not bad, f"{len(bad)} catalog values of fake {version} differ from the packet, e.g. {bad[:10]}"
    history = ztf2zarr.LightCurves(store.path).history(0, columns=["diaSourceId", "midpointMjdTai"])
    packet = _packet_epochs(alert.record)
    assert [int(i) for i in history["diaSourceId"]] == [int(d["diaSourceId"]) for d in packet]
    assert all(ztfref.same_value(t, np.float64(d["midpointMjdTai"])) for t, d in zip(history["midpointMjdTai"], packet))


# ---- container and single messages ----


@pytest.fixture(scope="module")
def fink_pair(builder, lsst_root):
    singles = _build(builder, lsst_root, "lsst-fink-singles", ["fink-v10.0"])
    container = _build(builder, lsst_root, "lsst-fink-container", ["fink-v10.0-container"])
    return Opened(singles), Opened(container)


def test_container_and_singles_decode_alike(singles, container_alerts):
    by_id = {_id(a): a.record for a in singles}
    for alert in container_alerts:
        assert alert.version == "10.0"
        assert _same_record(alert.record, by_id[_id(alert)]), _id(alert)


def _same_record(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_record(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same_record(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_container_gives_the_same_store_as_the_single_messages(fink_pair, container_alerts):
    one, other = fink_pair
    assert sorted(one.row) == sorted(other.row) == sorted(_id(a) for a in container_alerts)
    names = [n for n in one.catalog.dtype.names if n != "source"]
    assert one.catalog.dtype == other.catalog.dtype
    for i, r in one.row.items():
        s = other.row[i]
        for n in names:
            assert ztfref.same_value(other.catalog[n][s], one.catalog[n][r]), (i, n)
        assert one.stamps[r].tobytes() == other.stamps[s].tobytes(), i
        assert one.variance[r].tobytes() == other.variance[s].tobytes(), i
        assert str(other.catalog["source"][s]).startswith("lsst-alerts/fink-v10.0-container/alerts.avro")
    # The light-curve tables: the same rows (as sets: input order may differ), the same histories.
    for table in ("epochs", "forced"):
        assert _rows(one.root, table) == _rows(other.root, table), table
    a, b = ztf2zarr.LightCurves(one.path), ztf2zarr.LightCurves(other.path)
    np.testing.assert_array_equal(a.objects, b.objects)
    for obj in a.objects:
        assert _same_records(a.curve(obj, versions="all"), b.curve(obj, versions="all")), obj
    for i, r in one.row.items():
        for table in ("epochs", "forced"):
            assert _same_records(a.history(r, table), b.history(other.row[i], table)), (i, table)


def _rows(root, table: str) -> list:
    group = root[f"lightcurves/{table}"]
    columns = list(group.attrs["columns"])
    values = [_plain(group[c][:]) for c in columns]
    return sorted(tuple(_key(v[i]) for v in values) for i in range(len(values[0]) if values else 0))


def _plain(values):
    values = np.asarray(values)
    return values.astype(object) if values.dtype.kind in "OT" else values


def _key(value):
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return ("nan",)
    return value.item() if hasattr(value, "item") else str(value)


def _same_records(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.names != b.dtype.names or len(a) != len(b):
        return False
    return all(ztfref.same_value(b[n][i], a[n][i]) if a.dtype[n].kind != "U" else a[n][i] == b[n][i]
               for n in a.dtype.names for i in range(len(a)))


# ---- light curves against the packets ----


def _packet_epochs(record: dict) -> list:
    """The diaSources a packet carries, in packet order: prvDiaSources, then its own."""
    return list(record.get("prvDiaSources") or []) + [record["diaSource"]]


def test_history_is_the_packets_own_diasources(real, singles):
    curves = ztf2zarr.LightCurves(real.path)
    assert curves.survey.name == "lsst"
    columns = {c.name: c for c in ztfref.lsst_table_columns("epochs")}
    assert list(curves.columns("epochs")) == list(columns)
    carried = {_id(a): {int(d["diaSourceId"]) for d in _packet_epochs(a.record)} for a in singles}
    times = {_id(a): a.record["diaSource"]["midpointMjdTai"] for a in singles}
    bad = []
    for alert in singles:
        history = curves.history(real.row[_id(alert)])
        packet = _packet_epochs(alert.record)
        assert len(history) == len(packet), _id(alert)
        for stored, source in zip(history, packet):
            for name, column in columns.items():
                if column.source == "derived":
                    continue
                expected = ztfref.lsst_value(column, source.get(name))
                value = stored[name]
                if not (value == expected if column.is_string else ztfref.same_value(value, expected)):
                    bad.append((_id(alert), int(source["diaSourceId"]), name, value, expected))
            carrier = int(stored["alert_diaSourceId"])
            assert int(stored["diaSourceId"]) in carried[carrier], (_id(alert), carrier)
            assert ztfref.same_value(stored["alert_midpointMjdTai"], np.float64(times[carrier]))
        forced = curves.history(real.row[_id(alert)], table="forced")
        assert len(forced) == len(alert.record.get("prvDiaForcedSources") or [])
    assert not bad, f"{len(bad)} light-curve values differ from the packets, e.g. {bad[:10]}"


def test_history_is_leak_free(real, singles):
    curves = ztf2zarr.LightCurves(real.path)
    for row in range(len(real.catalog)):
        own = real.catalog["midpointMjdTai"][row]
        history = curves.history(row, columns=["diaSourceId", "midpointMjdTai"])
        assert len(history) >= 1 and int(history["diaSourceId"][-1]) == int(real.catalog["diaSourceId"][row])
        assert (history["midpointMjdTai"] <= own).all(), f"row {row} sees an epoch after itself"


def test_curve_of_the_object_with_16_previous_sources(real, singles):
    alert = next(a.record for a in singles if len(a.record.get("prvDiaSources") or []) == 16)
    object_id = int(alert["diaSource"]["diaObjectId"])
    curves = ztf2zarr.LightCurves(real.path)
    assert curves.objects.dtype == np.int64 and object_id in set(curves.objects.tolist())
    curve = curves.curve(object_id)
    assert len(curve) == 17
    packet = sorted(_packet_epochs(alert), key=lambda d: d["midpointMjdTai"])
    assert [int(i) for i in curve["diaSourceId"]] == [int(d["diaSourceId"]) for d in packet]
    assert (np.diff(curve["midpointMjdTai"]) >= 0).all()
    for name in ("midpointMjdTai", "psfFlux", "psfFluxErr"):
        column = next(c for c in ztfref.lsst_table_columns("epochs") if c.name == name)
        assert all(ztfref.same_value(curve[name][i], ztfref.lsst_value(column, d[name])) for i, d in enumerate(packet)), name
    assert set(curve["band"]) == {alert["diaSource"]["band"]}
    assert (curve["diaObjectId"] == object_id).all()
    # The one-call form, an id given as a string of digits, only some columns.
    few = ztf2zarr.curve(real.path, str(object_id), columns=["midpointMjdTai", "psfFlux"])
    assert few.dtype.names == ("midpointMjdTai", "psfFlux") and len(few) == 17
    assert _same_records(few, curve[["midpointMjdTai", "psfFlux"]])
    with pytest.raises(KeyError):
        curves.curve(1)


def test_latest_equals_all_without_revisions(real):
    curves = ztf2zarr.LightCurves(real.path)
    for obj in curves.objects:
        assert _same_records(curves.curve(obj), curves.curve(obj, versions="all")), obj


# ---- crafted alerts: forced photometry and a revised epoch ----


@pytest.fixture(scope="module")
def crafted(singles, lsst_root, builder, tmp_path_factory):
    """Two alerts of the object with 16 previous diaSources, written as one Avro container with
    the published 10.0 schema: A, the real alert with 3 prvDiaForcedSources added; B, a later
    alert of the same object whose packet carries A's history with one epoch's psfFlux revised,
    A's own diaSource, and 4 forced sources (one of A's revised). Returns (store, A, B)."""
    import copy

    import fastavro

    real = next(a.record for a in singles if len(a.record.get("prvDiaSources") or []) == 16)
    source = real["diaSource"]
    obj = int(source["diaObjectId"])

    def forced(i, flux):
        return {"diaForcedSourceId": 9_000_000_000_000_000 + i, "diaObjectId": obj, "ra": source["ra"], "dec": source["dec"],
                "visit": 1000 + i, "detector": 7, "psfFlux": flux, "psfFluxErr": 50.0,
                "midpointMjdTai": source["midpointMjdTai"] - 10.0 + i, "scienceFlux": 2.0 * flux, "scienceFluxErr": 60.0,
                "band": "g" if i % 2 else "r", "timeProcessedMjdTai": source["midpointMjdTai"], "timeWithdrawnMjdTai": None}

    a = copy.deepcopy(real)
    a["prvDiaForcedSources"] = [forced(i, 100.0 * (i + 1)) for i in range(3)]
    b = copy.deepcopy(real)
    b["prvDiaSources"] = copy.deepcopy(real["prvDiaSources"]) + [copy.deepcopy(source)]
    b["prvDiaSources"][3]["psfFlux"] = 12345.0  # a revised epoch
    b["diaSource"] = dict(copy.deepcopy(source), diaSourceId=source["diaSourceId"] + 1, midpointMjdTai=source["midpointMjdTai"] + 1.0)
    b["diaSourceId"] = b["diaSource"]["diaSourceId"]
    b["prvDiaForcedSources"] = [forced(i, 100.0 * (i + 1)) for i in range(3)] + [forced(3, 400.0)]
    b["prvDiaForcedSources"][1]["psfFlux"] = 999.0  # a revised forced epoch
    folder = tmp_path_factory.mktemp("lsst-crafted")
    with open(folder / "crafted.avro", "wb") as f:
        fastavro.writer(f, ztfref.lsst_schema(str(lsst_root), "10.0"), [a, b])
    build = builder.build("lsst-crafted", [folder / "crafted.avro"], cwd=folder)
    return Opened(build), a, b


def test_crafted_forced_photometry_and_revisions(crafted):
    store, a, b = crafted
    curves = ztf2zarr.LightCurves(store.path)
    obj = int(a["diaSource"]["diaObjectId"])
    # Each packet's own history, exactly: its diaSources, its forced sources.
    for alert in (a, b):
        row = store.row[int(alert["diaSource"]["diaSourceId"])]
        epochs = curves.history(row, columns=["diaSourceId", "psfFlux"])
        assert [int(i) for i in epochs["diaSourceId"]] == [int(d["diaSourceId"]) for d in _packet_epochs(alert)]
        assert [float(f) for f in epochs["psfFlux"]] == [float(np.float32(d["psfFlux"])) for d in _packet_epochs(alert)]
        forced = curves.history(row, table="forced")
        columns = {c.name: c for c in ztfref.lsst_table_columns("forced")}
        assert list(forced.dtype.names) == list(columns)
        assert len(forced) == len(alert["prvDiaForcedSources"])
        for stored, packet in zip(forced, alert["prvDiaForcedSources"]):
            for name, column in columns.items():
                if column.source != "derived":
                    expected = ztfref.lsst_value(column, packet.get(name))
                    assert (stored[name] == expected) if column.is_string else ztfref.same_value(stored[name], expected), name
    # The curve: the latest version of each key (B's), every version with versions="all".
    latest = curves.curve(obj)
    assert len(latest) == 18 and (np.diff(latest["midpointMjdTai"]) >= 0).all()
    revised = int(b["prvDiaSources"][3]["diaSourceId"])
    assert latest["psfFlux"][latest["diaSourceId"] == revised].tolist() == [12345.0]
    assert int(latest["alert_diaSourceId"][latest["diaSourceId"] == revised][0]) == int(b["diaSourceId"])
    assert len(curves.curve(obj, versions="all")) == 19
    forced = curves.curve(obj, table="forced")
    assert [int(i) for i in forced["diaForcedSourceId"]] == [int(d["diaForcedSourceId"]) for d in b["prvDiaForcedSources"]]
    assert forced["psfFlux"].tolist() == [100.0, 999.0, 300.0, 400.0]
    assert len(curves.curve(obj, table="forced", versions="all")) == 5
    # Leak-free: A's history has none of B's revisions.
    row_a = store.row[int(a["diaSource"]["diaSourceId"])]
    assert 12345.0 not in curves.history(row_a)["psfFlux"].tolist()
    assert 999.0 not in curves.history(row_a, table="forced")["psfFlux"].tolist()


def test_plot_draws_forced_photometry(crafted, tmp_path):
    store, a, b = crafted
    fig = plot.curve(store.path, int(a["diaSource"]["diaObjectId"]))
    _png(fig, tmp_path, "crafted-curve.png")
    ax = fig.axes[0]
    labels = [c.get_label() for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert "i detection" in labels and "g forced" in labels and "r forced" in labels
    forced_x = np.concatenate([c.lines[0].get_xdata() for c in ax.containers
                               if isinstance(c, ErrorbarContainer) and c.get_label().endswith("forced")])
    np.testing.assert_array_equal(np.sort(forced_x), np.sort([d["midpointMjdTai"] for d in b["prvDiaForcedSources"]]))
    fig = plot.alert(store.path, store.row[int(b["diaSource"]["diaSourceId"])])
    _png(fig, tmp_path, "crafted-alert.png")
    labels = [c.get_label() for c in fig.axes[-1].containers if isinstance(c, ErrorbarContainer)]
    assert "g forced" in labels


# ---- the reader: batches, open_dataset, plot ----


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_batches_give_stamps_variance_and_columns(real, engine):
    columns = ["diaSourceId", "diaObjectId", "midpointMjdTai", "band", "psfFlux", "isNegative"]
    seen = []
    for batch in ztf2zarr.batches(real.path, batch_size=4, columns=columns, engine=engine, variance=True, buffer_mb=0.01):
        assert set(batch) == {"stamps", "variance", "row", "label_code", *columns}
        for i, row in enumerate(batch["row"]):
            assert batch["stamps"][i].tobytes() == real.stamps[row].tobytes()
            assert batch["variance"][i].tobytes() == real.variance[row].tobytes()
            for c in columns:
                assert ztfref.same_value(batch[c][i], real.catalog[c][row]) if batch[c].dtype.kind != "U" \
                    else batch[c][i] == real.catalog[c][row]
        seen.extend(batch["row"].tolist())
    assert sorted(seen) == list(range(21))
    plain = next(ztf2zarr.batches(real.path, batch_size=21, engine=engine))
    assert set(plain) == {"stamps", "row", "label_code"}


def test_batches_history_in_days_and_band_codes(real, singles):
    by_row = {real.row[_id(a)]: a.record for a in singles}
    batch = next(ztf2zarr.batches(real.path, batch_size=21, history=True, history_len=8, history_relative_time=True))
    assert batch["history"].shape == (21, 8, 4) and ztf2zarr.DEFAULT_HISTORY_LSST == ("midpointMjdTai", "band", "psfFlux", "psfFluxErr")
    assert "midpointMjdTai" not in batch  # read for the relative time only
    for i, row in enumerate(batch["row"]):
        packet = sorted(_packet_epochs(by_row[row]), key=lambda d: d["midpointMjdTai"])[-8:]
        n = len(packet)
        assert batch["history_length"][i] == n and batch["history_mask"][i].sum() == n
        h = batch["history"][i, :n]
        own = by_row[row]["diaSource"]["midpointMjdTai"]
        np.testing.assert_array_equal(h[:, 0], np.float32([d["midpointMjdTai"] - own for d in packet]))
        assert (h[:, 0] <= 0).all() and h[-1, 0] == 0
        np.testing.assert_array_equal(h[:, 1], np.float32([BANDS.index(d["band"]) for d in packet]))
        np.testing.assert_array_equal(h[:, 2], np.float32([d["psfFlux"] for d in packet]))
        assert not batch["history"][i, n:].any()


def test_batches_normalize_and_no_variance_store(real, builder, lsst_root):
    batch = next(ztf2zarr.batches(real.path, batch_size=21, normalize="zscore_mad"))
    assert np.isfinite(batch["stamps"]).all() and batch["stamps"].dtype == np.float32
    bare = _build(builder, lsst_root, "lsst-novariance", ["boom", "fink-v10.0"], "--no-variance")
    assert not (bare.store / "variance").exists()
    with pytest.raises(ValueError, match="variance"):
        next(ztf2zarr.batches(bare.store, variance=True))
    assert "variance" not in ztf2zarr.open_dataset(bare.store)
    np.testing.assert_array_equal(Opened(bare).stamps, real.stamps)


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_open_dataset_on_a_rubin_store(real, engine):
    ds = ztf2zarr.open_dataset(real.path, engine=engine)
    assert ds.attrs["survey"] == "lsst"
    assert list(ds.data_vars)[: len(real.catalog.dtype.names)] == list(real.catalog.dtype.names)
    assert ds["stamps"].dims == ("alert", "channel", "stamp_y", "stamp_x")  # x, y are catalog columns
    assert ds["variance"].dims == ds["stamps"].dims and ds["variance"].attrs["units"] == "(nJy)^2"
    assert list(ds["channel"].values) == ["science", "template", "difference"]
    np.testing.assert_array_equal(ds["diaSourceId"].values, real.catalog["diaSourceId"])
    np.testing.assert_array_equal(ds["x"].values, real.catalog["x"])
    np.testing.assert_array_equal(ds["variance"].values, real.variance)
    np.testing.assert_array_equal(ds["stamps"].values, real.stamps)
    assert ds["psfFlux"].attrs["missing"] == "NaN" and "nJy" in ds["psfFlux"].attrs["description"]
    epochs = ztf2zarr.open_dataset(real.path, group="lightcurves/epochs", engine=engine)
    assert list(epochs.data_vars) == list(ztf2zarr.LightCurves(real.path).columns("epochs"))
    assert set(epochs["band"].values.tolist()) <= set(BANDS)
    objects = ztf2zarr.open_dataset(real.path, group="lightcurves/objects", engine=engine)
    assert objects["diaObjectId"].dtype == np.int64


def _png(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path, dpi=60)
    image = matplotlib.image.imread(path)[..., :3]
    assert image.std() > 0.05, f"{name} looks blank"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    return image


def test_plot_alert_and_curve(real, singles, tmp_path):
    alert = next(a.record for a in singles if len(a.record.get("prvDiaSources") or []) == 16)
    row = real.row[int(alert["diaSource"]["diaSourceId"])]
    fig = plot.alert(real.path, row)
    _png(fig, tmp_path, "alert.png")
    curve_ax = fig.axes[-1]
    assert "nJy" in curve_ax.get_ylabel()
    bars = [c for c in curve_ax.containers if isinstance(c, ErrorbarContainer)]
    assert sum(len(b.lines[0].get_xdata()) for b in bars) == 17
    assert f"diaSourceId {alert['diaSource']['diaSourceId']}" in fig._suptitle.get_text()
    fig = plot.curve(real.path, int(alert["diaSource"]["diaObjectId"]))
    _png(fig, tmp_path, "curve.png")
    ax = fig.axes[0]
    points = np.concatenate([b.lines[0].get_xdata() for b in ax.containers if isinstance(b, ErrorbarContainer)])
    np.testing.assert_array_equal(np.sort(points), np.sort([d["midpointMjdTai"] for d in _packet_epochs(alert)]))
    assert ax.get_xlabel() == "MJD (TAI)"
    # Every row draws (the boom alert, Solar System alerts, alerts without history).
    for r in range(len(real.catalog)):
        plot.alert(real.path, r)


# ---- the survey table ----


def test_survey_is_chosen_by_the_root_attrs(real):
    assert ztf2zarr.survey_of({}).name == "ztf"
    assert ztf2zarr.survey_of({"survey": "ztf"}).time_column == "jd"
    rubin = ztf2zarr.survey_of({"survey": "lsst"})
    assert (rubin.time_column, rubin.object_column, rubin.band_column, rubin.id_column) == \
        ("midpointMjdTai", "diaObjectId", "band", "diaSourceId")
    with pytest.raises(ValueError, match="survey"):
        ztf2zarr.survey_of({"survey": "nope"})
    assert ztf2zarr.Store(real.path).survey is rubin
    assert ztf2zarr.Store(real.path, engine="zarr").survey is rubin


# ---- --psf: the PSF images at their own size ----


@pytest.fixture(scope="module")
def psf_store(builder, lsst_root) -> Opened:
    return Opened(_build(builder, lsst_root, "lsst-psf", ["boom", "fink-v10.0"], "--psf"))


def _astropy_psfs(record: dict) -> list:
    """The PSFIMAGE of each cutout (science, template, difference) as astropy reads it, cast to
    float32 as the store keeps it; None for a null cutout or one without PSFIMAGE."""
    from astropy.io import fits

    out = []
    for name in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        cutout = record.get(name)
        if cutout is None:
            out.append(None)
            continue
        with fits.open(io.BytesIO(cutout)) as hdul:
            out.append(np.asarray(hdul["PSFIMAGE"].data, dtype=np.float32) if "PSFIMAGE" in hdul else None)
    return out


def test_psf_arrays_equal_astropy(psf_store, singles):
    root = psf_store.root
    index, pixels = np.asarray(root["psf/index"][:]), np.asarray(root["psf/pixels"][:])
    assert index.shape == (21, 3, 3) and index.dtype == np.int64 and pixels.dtype == np.float32
    assert root["psf"].attrs["description"].startswith("PSF images of the cutouts")
    assert root["psf/index"].attrs["fields"] == ["start", "height", "width"]
    end, sizes = 0, set()
    for r in range(21):  # row order: the images one after the other
        for k in range(3):
            start, height, width = index[r, k]
            assert start == end
            end = start + height * width
    assert end == len(pixels)
    for alert in singles:
        r = psf_store.row[_id(alert)]
        for k, expected in enumerate(_astropy_psfs(alert.record)):
            start, height, width = index[r, k]
            stored = pixels[start : start + height * width].reshape(height, width)
            assert stored.tobytes() == expected.tobytes(), f"PSF {k} of {_id(alert)}"
            assert abs(float(expected.astype(np.float64).sum()) - 1) < 2e-6  # normalised kernels
            sizes.add((k, int(height)))
    assert sizes == {(0, 41), (1, 39), (1, 49), (1, 77), (2, 41)}


def test_psf_leaves_the_rest_of_the_store_as_it_is(psf_store, real):
    np.testing.assert_array_equal(psf_store.stamps, real.stamps)
    np.testing.assert_array_equal(psf_store.variance, real.variance)
    assert psf_store.catalog.tobytes() == real.catalog.tobytes()
    assert "psf" not in real.root and "psf" not in real.root.attrs


def test_psf_under_dask(psf_store):
    import dask.array as da

    pixels = da.from_zarr(str(psf_store.path), component="psf/pixels")
    index = da.from_zarr(str(psf_store.path), component="psf/index")
    assert psf_store.root["psf/pixels"].chunks == (1 << 20,) and index.shape == (21, 3, 3)
    np.testing.assert_array_equal(pixels.compute(), psf_store.root["psf/pixels"][:])
    starts = index[:, :, 0].compute()
    assert (np.diff(starts.reshape(-1)) > 0).all()


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_store_psf_gives_each_image_at_its_own_size(psf_store, singles, engine):
    store = ztf2zarr.Store(psf_store.path, engine=engine)
    for alert in singles:
        got = store.psf(psf_store.row[_id(alert)])
        for image, expected in zip(got, _astropy_psfs(alert.record)):
            assert image.dtype == np.float32 and image.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="no PSF images in this store"):
        ztf2zarr.Store(_no_psf_store(psf_store), engine=engine).psf(0)


def _no_psf_store(psf_store):
    """A copy of the psf store without its psf group (its metadata rewritten as a build without --psf would)."""
    import json
    import shutil

    copy = psf_store.path.parent / "lsst-psf-removed.zarr"
    if not copy.exists():
        shutil.copytree(psf_store.path, copy)
        shutil.rmtree(copy / "psf")
        meta = json.loads((copy / ".zmetadata").read_text())
        meta["metadata"] = {k: v for k, v in meta["metadata"].items() if not k.startswith("psf/")}
        (copy / ".zmetadata").write_text(json.dumps(meta))
    return copy


def _centred(image: np.ndarray, size: int) -> np.ndarray:
    """The documented rule, written out pixel by pixel: output pixel (size//2 + dy, size//2 + dx)
    is image pixel (h//2 + dy, w//2 + dx) where the image has it, else 0."""
    h, w = image.shape
    out = np.zeros((size, size), np.float32)
    for y in range(size):
        for x in range(size):
            sy, sx = y - size // 2 + h // 2, x - size // 2 + w // 2
            if 0 <= sy < h and 0 <= sx < w:
                out[y, x] = image[sy, sx]
    return out


@pytest.mark.parametrize("size", [21, 40, 81])
def test_batches_give_psf_at_a_fixed_size(psf_store, singles, size):
    by_row = {psf_store.row[_id(a)]: _astropy_psfs(a.record) for a in singles}
    seen = 0
    for batch in ztf2zarr.batches(psf_store.path, batch_size=8, psf=size):
        assert batch["psf"].shape == (len(batch["row"]), 3, size, size) and batch["psf"].dtype == np.float32
        for i, row in enumerate(batch["row"]):
            for k, image in enumerate(by_row[int(row)]):
                np.testing.assert_array_equal(batch["psf"][i, k], _centred(image, size))
            if size % 2:  # a real PSF's peak lands on the centre pixel of an odd side
                assert batch["psf"][i, 0].argmax() == (size // 2) * size + size // 2
            seen += 1
    assert seen == 21


def test_psf_reader_errors(psf_store, tmp_path):
    import shutil

    from ztf2zarr._psf import Psf

    with pytest.raises(ValueError, match="no PSF images"):
        next(ztf2zarr.batches(_no_psf_store(psf_store), psf=21))
    with pytest.raises(ValueError, match="psf size must be a positive int"):
        next(ztf2zarr.batches(psf_store.path, psf=0))
    # A damaged index: an entry past the pixels is named, never read as garbage.
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(psf_store.path, damaged)
    import zarr

    index = zarr.open(str(damaged / "psf" / "index"), mode="r+")
    entry = np.asarray(index[3])
    entry[1, 0] = 10**9
    index[3] = entry
    with pytest.raises(ValueError, match=r"psf/index\[3, 1\] = \[1000000000, .*is not an image"):
        ztf2zarr.Store(damaged).psf(3)
    with pytest.raises(ValueError, match=r"psf/index\[3, 1\]"):
        Psf(ztf2zarr.Store(damaged)).fixed([0, 3], 21)
    assert ztf2zarr.Store(damaged).psf(2)[0].shape == (41, 41)  # the other rows read as before
