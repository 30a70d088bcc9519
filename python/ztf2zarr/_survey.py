"""What the reader needs to know about each survey whose alerts a store holds, in one place.

A store names its survey in the root attribute `survey` (`"ztf"` or `"lsst"`); a store written
before that attribute existed is a ZTF store. Everything else in the reader that depends on the
survey (which column is the time, the object, the band, the unique id; how epochs of one object
are told apart; what the light-curve plots draw) is read from the `Survey` chosen here.

ZTF: time `jd` (Julian Date), object `objectId` (string), band `fid` (1 g, 2 r, 3 i), unique id
`candid`; magnitudes. Rubin (LSST): time `midpointMjdTai` (MJD, TAI), object `diaObjectId`
(int64), band `band` (`u g r i z y`), unique id `diaSourceId`; fluxes in nJy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: `stamp_flags` bits shared by both surveys: part of the window outside the cutout, NaN pixels,
#: a centre guessed.
FLAG_EDGE, FLAG_NAN, FLAG_GUESSED = 1, 2, 4


@dataclass(frozen=True)
class Survey:
    """The names and conventions of one survey's stores.

    - `name`: the root attribute `survey` it is chosen by.
    - `id_column`: the catalog's unique key (one row per value).
    - `object_column`: the object a row belongs to, in the catalog, the light-curve tables and
      `lightcurves/objects`.
    - `time_column`: the time of an epoch (catalog and light-curve tables); `time_unit` says in
      what, `mjd_offset` is subtracted from it to give MJD.
    - `band_column`: the band of an epoch; `bands` maps each of its values to (colour, name).
    - `alert_columns`: (time, id) columns of the light-curve tables naming the alert whose packet
      first carried a row's values.
    - `key_columns`: per table, the columns that tell one object's epochs apart.
    - `default_history`: the columns `batches(…, history=True)` gives.
    - `flag_names`: short names of the `stamp_flags` bits, for titles.
    - `fill_flags`: the `stamp_flags` bits of a row whose stamps hold filled pixels (before a
      store's policies are considered, see `fill_bits`).
    - `magnitudes`: whether light curves are drawn as magnitudes (ZTF) or as fluxes (Rubin, nJy).
    """

    name: str
    id_column: str
    object_column: str
    time_column: str
    time_unit: str
    mjd_offset: float
    band_column: str
    bands: dict
    alert_columns: tuple
    key_columns: dict
    default_history: tuple
    flag_names: dict
    fill_flags: int
    magnitudes: bool

    @property
    def alert_time_column(self) -> str:
        return self.alert_columns[0]

    @property
    def alert_id_column(self) -> str:
        return self.alert_columns[1]

    def key_arrays(self, values: dict, table: str) -> list:
        """The arrays that, together, identify an epoch of one object in `table`, from the
        columns `key_columns[table]` in `values`."""
        if self.name == "ztf" and table == "epochs":
            # A detection by candid, an upper limit by (jd, fid), with a flag telling the two apart.
            from ._lightcurves import _fixed_width

            limit = _fixed_width(values["kind"]) != "detection"
            return [limit, np.where(limit, 0, values["candid"]), np.where(limit, values["jd"], 0.0),
                    np.where(limit, values["fid"], 0)]
        return [values[c] for c in self.key_columns[table]]

    def band_codes(self, values: np.ndarray) -> np.ndarray:
        """Band values as numbers, for a float array: ZTF's `fid` as it is; a Rubin band name as
        its position in `u g r i z y` (0 … 5), −1 for any other value."""
        values = np.asarray(values)
        if values.dtype.kind in "biuf":
            return values
        names = list(self.bands)
        lookup = {name: code for code, name in enumerate(names)}
        return np.array([lookup.get(str(v), -1) for v in values.tolist()], dtype=np.int64)

    def fill_bits(self, settings: dict) -> int:
        """The `stamp_flags` bits whose rows may hold filled pixels stored as 0, in a store whose
        `ztf2zarr` root attributes are `settings` (0: the store keeps them as NaN)."""
        if settings.get("nan_policy", "zero") != "zero":
            return 0
        if self.name == "ztf":
            # A store without masked_policy was written when masked pixels were kept as they are.
            masked = 8 if settings.get("masked_policy", "keep") == "missing" else 0
            return FLAG_EDGE | FLAG_NAN | masked
        return self.fill_flags

    def object_key(self, object_id, ids: np.ndarray):
        """`object_id` as the values of the object index `ids` are: an int for an integer index
        (a string of digits is taken too), a str for a string one."""
        if ids.dtype.kind in "iu":
            if isinstance(object_id, (str, np.str_)):
                try:
                    return int(object_id)
                except ValueError:
                    raise KeyError(f"object id {object_id!r} is not an integer ({self.object_column} is)") from None
            return int(object_id)
        return str(object_id)


ZTF = Survey(
    name="ztf",
    id_column="candid",
    object_column="objectId",
    time_column="jd",
    time_unit="JD",
    mjd_offset=2400000.5,
    band_column="fid",
    bands={1: ("tab:green", "g"), 2: ("tab:red", "r"), 3: ("tab:orange", "i")},
    alert_columns=("alert_jd", "alert_candid"),
    key_columns={"epochs": ("kind", "candid", "jd", "fid"), "forced": ("jd", "fid", "pid")},
    default_history=("jd", "fid", "magpsf", "sigmapsf", "diffmaglim"),
    flag_names={1: "edge cutout", 2: "NaN pixels", 4: "edge guessed", 8: "masked pixels"},
    fill_flags=FLAG_EDGE | FLAG_NAN | 8,
    magnitudes=True,
)

LSST = Survey(
    name="lsst",
    id_column="diaSourceId",
    object_column="diaObjectId",
    time_column="midpointMjdTai",
    time_unit="MJD (TAI)",
    mjd_offset=0.0,
    band_column="band",
    bands={"u": ("tab:purple", "u"), "g": ("tab:green", "g"), "r": ("tab:red", "r"), "i": ("tab:orange", "i"),
           "z": ("tab:brown", "z"), "y": ("black", "y")},
    alert_columns=("alert_midpointMjdTai", "alert_diaSourceId"),
    key_columns={"epochs": ("diaSourceId",), "forced": ("diaForcedSourceId",)},
    default_history=("midpointMjdTai", "band", "psfFlux", "psfFluxErr"),
    flag_names={1: "padded", 2: "NaN pixels", 4: "centre guessed", 8: "no cutout", 16: "no variance"},
    # 16 (no UNCERT image) fills the variance planes only, not the stamps.
    fill_flags=FLAG_EDGE | FLAG_NAN | 8,
    magnitudes=False,
)

SURVEYS = {s.name: s for s in (ZTF, LSST)}


def survey_of(attrs: dict) -> Survey:
    """The survey a store's root attributes name (`survey`; none: ZTF)."""
    name = attrs.get("survey") or "ztf"
    if name not in SURVEYS:
        raise ValueError(f"the store's survey {name!r} is not one this reader knows ({', '.join(SURVEYS)})")
    return SURVEYS[name]
