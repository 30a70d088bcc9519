"""Regenerate schemas/catalog.tsv, schemas/epochs.tsv, schemas/forced.tsv,
schemas/ztf_alert_v3.3.avsc and schemas/ztf_alert_v4.02.avsc from the published ZTF alert schemas.

Usage: python3 schemas/make_schemas.py PATH/TO/ztf-avro-alert/schema

The published schemas live in one folder per version (v1.3 ... v4.02), each with cutout.avsc,
candidate.avsc, prv_candidate.avsc, alert.avsc (and fp_hist.avsc from 4.01 on).

catalog.tsv lists every output column of the store's `catalog` array, in order:
  name, numpy dtype, missing value, source (where the value comes from), description.
Candidate columns are the union of candidate fields over all versions (4.02 order, then fields
that only older versions have); descriptions are ZTF's own `doc` strings.

epochs.tsv lists the columns of `lightcurves/epochs` (one row per distinct detection or upper
limit of an object): objectId, kind, then every prv_candidate field over all versions (candid,
jd, fid first). forced.tsv lists those of `lightcurves/forced` (one row per distinct forced-
photometry epoch): objectId, then every fp_hist field (jd, fid, pid first), then the alert the
values come from.
"""
import json
import sys
from pathlib import Path

VERSIONS = ["v4.02", "v4.01", "v3.5-nullfirst", "v3.5", "v3.4", "v3.3", "v3.2", "v3.1", "v3.0", "v2.0", "v1.8", "v1.3"]
INT_MISSING = {"<i2": "-1", "<i4": "-2147483648", "<i8": "-9223372036854775808", "|u1": "0"}
STRING_WIDTH = {"procstatus": 32, "pdiffimfilename": 64, "programpi": 32, "ssnamenr": 32, "rbversion": 32,
                "drbversion": 32, "isdiffpos": 8}
# prv_candidates name their difference images by archive path (up to 131 characters seen),
# where candidates give the bare file name.
EPOCHS_STRING_WIDTH = {**STRING_WIDTH, "pdiffimfilename": 160}
AVRO_TO_NUMPY = {"double": "<f8", "float": "<f4", "int": "<i4", "long": "<i8"}

LEADING = [
    ("candid", "<i8", "alert.candid", "Candidate ID from operations DB; unique key of the store (one row per candid)"),
    ("objectId", "<U12", "alert.objectId", "ZTF object identifier (ZTFyyaaaaaaa); alerts of one object share it"),
    ("label", "<U24", "derived", "Class label cross-matched on objectId from a classifier CSV (ztf2zarr build/label --labels); empty = unlabeled"),
    ("label_code", "<i2", "derived", "Integer code of label (table in the root attrs ztf2zarr.labels.classes); -1 = unlabeled"),
    ("stamp_flags", "|u1", "derived", "Bitmask about this row's stamps: 1 = edge cutout placed in the 63x63 frame (clipped at a CCD edge), "
     "2 = a stored stamp pixel was NaN (replaced by 0 unless --keep-nan), 4 = edge placement guessed (xpos/ypos missing), "
     "8 = a stored stamp pixel held ZTF's masked-pixel value -3.4028235e38 (stored like a NaN pixel unless --keep-masked)"),
    ("schemavsn", "<U8", "alert.schemavsn", "ZTF alert schema version the packet was written with (empty before 3.x)"),
    ("publisher", "<U32", "alert.publisher", "Origin of the alert packet (empty before 3.x)"),
    ("source", "<U128", "derived", "Input the alert was read from: file name, or ARCHIVE.tar.gz:member (last 128 characters)"),
    ("n_prv_candidates", "<i4", "derived", "Number of entries in prv_candidates (previous detections and upper limits)"),
    ("n_fp_hists", "<i4", "derived", "Number of entries in fp_hists (forced photometry history, schema 4.x only)"),
]


EPOCHS_LEADING = [
    ("objectId", "<U12", "alert.objectId", "ZTF object identifier of the alert that carried this epoch"),
    ("kind", "<U11", "derived", "detection (a candidate, with a candid) or upper_limit (a non-detection: candid and the measured fields are missing)"),
]
EPOCHS_FIRST = ["candid", "jd", "fid"]
FORCED_LEADING = [("objectId", "<U12", "alert.objectId", "ZTF object identifier of the alert that carried this epoch")]
FORCED_FIRST = ["jd", "fid", "pid"]
# Both tables end with the alert that first carried a row's values (a row's version is every
# column before these two).
CARRYING_ALERT = [
    ("alert_candid", "<i8", "derived", "candid of the first stored alert whose packet carried these values (a packet that carries other values for the epoch adds another row)"),
    ("alert_jd", "<f8", "derived", "jd of that alert [days]"),
]


def avro_base_type(t):
    if isinstance(t, list):
        return next(x for x in t if x != "null")
    return t


def union_of_fields(root, file, versions=VERSIONS):
    """Every field of `file` over `versions`, newest first: name -> (avro type, doc, version)."""
    fields = {}
    for version in versions:
        path = root / version / file
        if not path.exists():
            continue
        for f in json.loads(path.read_text())["fields"]:
            if f["name"] not in fields:
                fields[f["name"]] = (avro_base_type(f["type"]), f.get("doc", ""), version)
    return fields


def column(name, avro, doc, version, source, newest="v4.02", widths=STRING_WIDTH):
    dtype = f"<U{widths[name]}" if avro == "string" else AVRO_TO_NUMPY[avro]
    missing = INT_MISSING.get(dtype, "NaN" if dtype.startswith("<f") else "")
    if version != newest:
        doc = f"{doc} (only in schema {version[1:]} and earlier)"
    return (name, dtype, missing, source, doc)


def leading(entries):
    return [(name, dtype, INT_MISSING.get(dtype, "NaN" if dtype.startswith("<f") else ""), source, doc)
            for name, dtype, source, doc in entries]


def write_table(name, rows):
    out = ["# name\tdtype\tmissing\tsource\tdescription"]
    out += ["\t".join(r) for r in rows]
    (Path(__file__).parent / name).write_text("\n".join(out) + "\n")


def light_curve_tables(root):
    prv = union_of_fields(root, "prv_candidate.avsc")
    order = EPOCHS_FIRST + [n for n in prv if n not in EPOCHS_FIRST]
    write_table("epochs.tsv", leading(EPOCHS_LEADING) + [column(n, *prv[n], f"prv_candidate.{n}", widths=EPOCHS_STRING_WIDTH) for n in order]
                + leading(CARRYING_ALERT))
    fp = union_of_fields(root, "fp_hist.avsc")
    order = FORCED_FIRST + [n for n in fp if n not in FORCED_FIRST]
    write_table("forced.tsv", leading(FORCED_LEADING) + [column(n, *fp[n], f"fp_hist.{n}") for n in order] + leading(CARRYING_ALERT))


def main(root):
    root = Path(root)
    fields = union_of_fields(root, "candidate.avsc")
    light_curve_tables(root)
    rows = []
    for name, dtype, source, doc in LEADING:
        missing = INT_MISSING.get(dtype, "NaN" if dtype.startswith("<f") else "")
        rows.append((name, dtype, missing, source, doc))
    for name, (avro, doc, version) in fields.items():
        if name == "candid":
            continue
        if avro == "string":
            dtype = f"<U{STRING_WIDTH[name]}"
        else:
            dtype = AVRO_TO_NUMPY[avro]
        missing = INT_MISSING.get(dtype, "NaN" if dtype.startswith("<f") else "")
        if version != "v4.02":
            doc = f"{doc} (only in schema {version[1:]} and earlier)"
        rows.append((name, dtype, missing, f"candidate.{name}", doc))
    out = ["# name\tdtype\tmissing\tsource\tdescription"]
    out += ["\t".join(r) for r in rows]
    (Path(__file__).parent / "catalog.tsv").write_text("\n".join(out) + "\n")

    # Self-contained alert schemas (named types defined before use), for the sample generator.
    for version in ["v3.3", "v4.02"]:
        (Path(__file__).parent / f"ztf_alert_{version}.avsc").write_text(json.dumps(alert_schema(root / version), indent=1) + "\n")


def alert_schema(v):
    """The alert schema of folder `v` as one document: each named type inlined where it is first used."""
    names = ["cutout", "candidate", "prv_candidate", "fp_hist"]
    inline = {f"ztf.alert.{n}": json.loads((v / f"{n}.avsc").read_text()) for n in names if (v / f"{n}.avsc").exists()}
    alert = json.loads((v / "alert.avsc").read_text())
    seen = set()

    def resolve(t):
        if isinstance(t, str) and t in inline:
            if t in seen:
                return t
            seen.add(t)
            return inline[t]
        if isinstance(t, list):
            return [resolve(x) for x in t]
        if isinstance(t, dict) and t.get("type") == "array":
            return {**t, "items": resolve(t["items"])}
        return t

    for f in alert["fields"]:
        f["type"] = resolve(f["type"])
    return alert


if __name__ == "__main__":
    main(sys.argv[1])
