"""Regenerate the bundled Rubin (LSST) alert schemas and column tables in schemas/lsst/.

Usage: python3 schemas/lsst/make_lsst_schemas.py PATH/TO/SCHEMA/FOLDER

The folder holds one sub-folder per published version (7.0 ... 11.1), each with the
`lsst.v<M>_<m>.*.avsc` files of lsst/alert_packet (alert.avsc refers to the other records by
full name, e.g. `lsst.v10_0.diaSource`). Written next to this script:

  <M>.<m>.avsc   one self-contained writer schema per version: alert.avsc with every named type
                 inlined where it is first used and referred to by full name afterwards (as
                 fastavro's parsed form does), so a message's schema id alone picks its schema.
  catalog.tsv    the columns of the store's `catalog` array.
  epochs.tsv     the columns of `lightcurves/epochs` (diaSources: prvDiaSources and the alert's own).
  forced.tsv     the columns of `lightcurves/forced` (prvDiaForcedSources).

Each column table line is: name, numpy dtype, missing value, source, description.

Columns are unions over every version: a record's fields newest version first (11.1 order), then
the fields only older versions have, in the order the newest version that has them lists them.
Types: long -> <i8, int -> <i4, float -> <f4, double -> <f8, boolean -> |u1 (0 false, 1 true,
255 null: Rubin's flags are nullable, and a null flag is not a false one), string -> <U{n} with
the width in STRING_WIDTH. Missing values: NaN for floats, the type's minimum for integers,
empty for strings. Descriptions are the newest version's `doc`, with the versions that have the
field when not all do. Python 3.11, standard library only.
"""
import json
import sys
from pathlib import Path

VERSIONS = ["7.0", "7.1", "7.2", "7.3", "7.4", "8.0", "9.0", "10.0", "11.0", "11.1"]
NEWEST_FIRST = list(reversed(VERSIONS))
AVRO_TO_NUMPY = {"double": "<f8", "float": "<f4", "int": "<i4", "long": "<i8", "boolean": "|u1"}
MISSING = {"<f4": "NaN", "<f8": "NaN", "<i2": "-1", "<i4": "-2147483648", "<i8": "-9223372036854775808", "|u1": "255"}
# String widths, in characters. Seen in real alerts (boom 9.0, Fink 10.0): band 1 character,
# observation_reason up to 10 (ddf_cosmos), target_name up to 19 ("ddf_edfs_b, lowdust": a
# comma-separated list of targets, so it can grow), designations up to 10 ("2017 SA109").
# The widths leave room; a longer value is cut and the build reports the column.
STRING_WIDTH = {"band": 4, "observation_reason": 64, "target_name": 64, "designation": 32, "reliabilityVersion": 32}

# Columns the tool fills itself, after the alert's fields.
TRAILING = [
    ("schema_version", "<U8", "", "derived", "Rubin alert schema version the packet was written with (e.g. 10.0): from the Confluent schema id (major*100 + minor) or the container's writer schema"),
    ("stamp_flags", "|u1", "0", "derived", "Bitmask about this row's stamps: the meaning of each bit is in the root attrs (ztf2zarr.stamp_flags)"),
    ("label", "<U24", "", "derived", "Class label cross-matched on diaObjectId from a classifier CSV (ztf2zarr build/label --labels); empty = unlabeled"),
    ("label_code", "<i2", "-1", "derived", "Integer code of label (table in the root attrs ztf2zarr.labels.classes); -1 = unlabeled"),
    ("source", "<U128", "", "derived", "Input the alert was read from: file name, or ARCHIVE.tar.gz:member (last 128 characters)"),
]
# Both light-curve tables end with the alert that first carried a row's values (a row's version
# is every column before these two), in this order.
CARRYING_ALERT = [
    ("alert_diaSourceId", "<i8", "-9223372036854775808", "derived", "diaSourceId of the first stored alert whose packet carried these values (a packet that carries other values for the source adds another row)"),
    ("alert_midpointMjdTai", "<f8", "NaN", "derived", "midpointMjdTai of that alert's diaSource [MJD, TAI]"),
]


def base_type(t):
    """The type a value is stored as: the non-null branch of a union, a logical type's own type."""
    if isinstance(t, list):
        t = next(x for x in t if x != "null")
    if isinstance(t, dict) and "logicalType" in t:
        return t["type"]
    return t


def logical_type(t):
    if isinstance(t, list):
        t = next(x for x in t if x != "null")
    return t.get("logicalType") if isinstance(t, dict) else None


def load(root, version, record):
    major, minor = version.split(".")
    return json.loads((root / version / f"lsst.v{major}_{minor}.{record}.avsc").read_text())


def named_types(root, version):
    """Every named record of a version's folder, by full name."""
    major, minor = version.split(".")
    names = {}
    for path in sorted((root / version).glob("*.avsc")):
        schema = json.loads(path.read_text())
        full = schema["name"] if "." in schema["name"] else f'{schema.get("namespace", f"lsst.v{major}_{minor}")}.{schema["name"]}'
        names[full] = schema
    return names


def inline(schema, names, defined):
    """`schema` with every named type it refers to inlined at first use (full name after)."""
    if isinstance(schema, str):
        if schema in names and schema not in defined:
            defined.add(schema)
            return inline(names[schema], names, defined)
        return schema
    if isinstance(schema, list):
        return [inline(s, names, defined) for s in schema]
    out = {}
    for key, value in schema.items():
        if key == "confluent:version":
            continue  # the id of one record file, not of the alert this becomes part of
        if key == "fields":
            out[key] = [{**f, "type": inline(f["type"], names, defined)} for f in value]
        elif key in ("items", "values", "type") and not isinstance(value, str) or (key in ("items", "values") and isinstance(value, str)):
            out[key] = inline(value, names, defined)
        else:
            out[key] = value
    if out.get("type") == "record":
        namespace = out.pop("namespace", None)
        full = out["name"] if "." in out["name"] or not namespace else f"{namespace}.{out['name']}"
        out = {"name": full, **{k: v for k, v in out.items() if k != "name"}}
        defined.add(full)
    return out


def self_contained(root, version):
    major, minor = version.split(".")
    names = named_types(root, version)
    alert = names.pop(f"lsst.v{major}_{minor}.alert")
    return inline(alert, names, {f"lsst.v{major}_{minor}.alert"})


def present_in(versions):
    """' (schemas 7.0-7.4)' when a field is not in every version."""
    if versions == set(VERSIONS):
        return ""
    ordered = [v for v in VERSIONS if v in versions]
    first, last = ordered[0], ordered[-1]
    contiguous = VERSIONS[VERSIONS.index(first):VERSIONS.index(last) + 1] == ordered
    if contiguous:
        text = first if first == last else f"{first}-{last}"
    else:
        text = ", ".join(ordered)
    return f" (only in schema {text})"


def union_of_fields(root, record, versions=VERSIONS):
    """Every field of `record` over `versions`, newest first: name -> (avro type, doc, versions)."""
    fields = {}
    for version in sorted(versions, key=VERSIONS.index, reverse=True):
        major, minor = version.split(".")
        path = root / version / f"lsst.v{major}_{minor}.{record}.avsc"
        if not path.exists():
            continue
        for f in json.loads(path.read_text())["fields"]:
            doc = f.get("doc", "")
            if logical_type(f["type"]) == "timestamp-micros":
                doc = f"{doc} [microseconds since 1970-01-01T00:00:00 UTC]"
            entry = fields.setdefault(f["name"], [base_type(f["type"]), doc, set()])
            if entry[0] != base_type(f["type"]) and isinstance(entry[0], str) and entry[0] in AVRO_TO_NUMPY:
                sys.exit(f"{record}.{f['name']}: type {base_type(f['type'])} in {version}, {entry[0]} in a newer version")
            if not entry[1] and doc:
                entry[1] = doc
            entry[2].add(version)
    return fields


def numpy_type(name, avro_type):
    if avro_type == "string":
        bare = name.split("_", 1)[1] if name.startswith(("diaObject_", "ssSource_")) else name
        return f"<U{STRING_WIDTH[bare]}"
    return AVRO_TO_NUMPY[avro_type]


def column(name, avro_type, source, doc, versions):
    dtype = numpy_type(name, avro_type)
    missing = "" if dtype.startswith("<U") else MISSING[dtype]
    doc = " ".join(doc.split()).replace("\t", " ")
    if avro_type == "boolean":
        doc = f"{doc} [1 true, 0 false, 255 null]" if doc else "[1 true, 0 false, 255 null]"
    return (name, dtype, missing, source, doc + present_in(versions))


def record_columns(root, record, source, prefix="", first=()):
    fields = union_of_fields(root, record)
    order = list(first) + [n for n in fields if n not in first]
    return [column(prefix + n, fields[n][0], f"{source}.{n}", fields[n][1], fields[n][2]) for n in order]


def write_tsv(path, rows):
    with open(path, "w") as f:
        f.write("# name\tdtype\tmissing\tsource\tdescription\n")
        for row in rows:
            assert all("\t" not in cell and "\n" not in cell for cell in row), row
            f.write("\t".join(row) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = Path(sys.argv[1])
    out = Path(__file__).resolve().parent
    for version in VERSIONS:
        schema = self_contained(root, version)
        (out / f"{version}.avsc").write_text(json.dumps(schema, indent=1) + "\n")

    dia_source = record_columns(root, "diaSource", "diaSource", first=("diaSourceId", "diaObjectId"))
    name, dtype, missing, source, doc = dia_source[0]
    dia_source[0] = (name, dtype, missing, source, f"{doc} Unique key of the store (one row per diaSourceId).")

    alert = union_of_fields(root, "alert")
    alert_level = [column(n, alert[n][0], f"alert.{n}", alert[n][1], alert[n][2]) for n in ("observation_reason", "target_name", "alertId")]
    catalog = (
        dia_source
        + alert_level
        + record_columns(root, "diaObject", "diaObject", prefix="diaObject_")
        + record_columns(root, "ssSource", "ssSource", prefix="ssSource_")
        + TRAILING
    )
    write_tsv(out / "catalog.tsv", catalog)
    epochs = record_columns(root, "diaSource", "diaSource", first=("diaSourceId", "diaObjectId")) + CARRYING_ALERT
    write_tsv(out / "epochs.tsv", epochs)
    forced = record_columns(root, "diaForcedSource", "diaForcedSource") + CARRYING_ALERT
    write_tsv(out / "forced.tsv", forced)
    print(f"{len(VERSIONS)} schemas; catalog {len(catalog)} columns, epochs {len(epochs)}, forced {len(forced)}")


if __name__ == "__main__":
    main()
