//! UTC timestamps as RFC 3339 text, without a date-time dependency.

/// `2026-11-22T02:40:42.123456789Z` for nanoseconds since the Unix epoch.
pub fn rfc3339_ns(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2027-01-31`, `2027-01-31T12:00:00Z` or `2027-01-31 12:00:00` (UTC) to nanoseconds since the
/// Unix epoch.
pub fn parse_utc_ns(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a UTC date like 2027-01-31 or 2027-01-31T12:00:00Z");
    let text = text.trim();
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, t.trim_end_matches('Z')),
        None => (text, "00:00:00"),
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return Err(bad());
    }
    let (y, m, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hh, mm, ss) = (num(t[0])?, num(t[1])?, num(t[2])?);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || ss > 60
        || !(1970..=9999).contains(&y)
    {
        return Err(bad());
    }
    let days = days_from_civil(y, m as u32, day as u32);
    if civil_from_days(days) != (y, m as u32, day as u32) {
        return Err(bad()); // e.g. February 30th
    }
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().and_then(|s| s.checked_mul(1_000_000_000)).ok_or_else(bad)
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's method).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's method).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_back_to_their_instants() {
        assert_eq!(parse_utc_ns("1970-01-01"), Ok(0));
        assert_eq!(parse_utc_ns("2000-02-29T12:34:56Z"), Ok(951_827_696_000_000_000));
        assert_eq!(parse_utc_ns("2000-02-29 12:34:56"), Ok(951_827_696_000_000_000));
        assert!(parse_utc_ns("2001-02-29").is_err());
        assert!(parse_utc_ns("tomorrow").is_err());
        assert!(parse_utc_ns("2027-13-01").is_err());
        // Found by tests/fuzz.rs: a huge year overflowed instead of being refused.
        assert!(parse_utc_ns("292277026597-01-01T00:00:00Z").is_err());
        assert!(parse_utc_ns("2555-01-01").is_err(), "past u64 nanoseconds");
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29T12:34:56Z (a leap day)
        assert_eq!(rfc3339_ns(951_827_696_000_000_007), "2000-02-29T12:34:56.000000007Z");
        assert_eq!(rfc3339_ns(1_795_321_242_000_000_000), "2026-11-22T04:20:42.000000000Z");
    }
}
