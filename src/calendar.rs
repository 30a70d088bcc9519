//! Calendar arithmetic shared by provenance times, `info`'s nights and the synthetic alerts:
//! UTC timestamps, day counts to dates, Julian dates to dates. No time-zone database needed.

/// Julian date of 1970-01-01T00:00 UTC.
pub const UNIX_EPOCH_JD: f64 = 2_440_587.5;

/// The current time as an ISO 8601 UTC timestamp (`2026-11-21T23:38:45Z`), or the time in
/// `SOURCE_DATE_EPOCH` (seconds) when set, so that provenance can be made reproducible.
#[must_use]
pub fn utc_now() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or_else(unix_now);
    utc_of(seconds)
}

/// Seconds since 1970-01-01T00:00 UTC by this machine's clock (never `SOURCE_DATE_EPOCH`: for
/// lease expiries, which other machines compare with theirs).
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The ISO 8601 UTC timestamp of `seconds` since 1970-01-01T00:00 UTC.
#[must_use]
pub fn utc_of(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    let rest = seconds % 86_400;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC calendar date (`YYYY-MM-DD`) of a Julian date.
#[must_use]
pub fn jd_to_date(jd: f64) -> String {
    #[allow(clippy::cast_possible_truncation)] // a JD within the calendar's range
    let days = (jd - UNIX_EPOCH_JD).floor() as i64;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn julian_dates_become_utc_dates() {
        assert_eq!(jd_to_date(2_451_544.5), "2000-01-01");
        assert_eq!(jd_to_date(2_458_881.9), "2020-02-02");
    }
}
