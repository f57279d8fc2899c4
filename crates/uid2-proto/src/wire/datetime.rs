//! The date-time text of `/v2/identity/buckets`: `YYYY-MM-DDTHH:MM:SS[.fraction]` in, taken as
//! UTC with no zone (Java's `ISO_LOCAL_DATE_TIME`), and `yyyy-MM-ddTHH:mm:ss.SSS` out.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f{0,9}]` to Unix ms, as Java's `ISO_LOCAL_DATE_TIME` parses it:
/// the `T` in either case, seconds optional, a fraction (after seconds only) of up to nine
/// digits, possibly none after the dot.
pub fn parse_local_date_time(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', 't'])?;
    let mut d = date.split('-');
    let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || mo.len() != 2 || da.len() != 2 {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, da) = (num(y)?, num(mo)?, num(da)?);
    if !(1..=12).contains(&mo) || da < 1 || da > days_in_month(y, mo) {
        return None;
    }
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, f)) if f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => (hms, Some(f)),
        Some(_) => return None,
        None => (time, None),
    };
    let mut t = hms.split(':');
    let (h, mi) = (t.next()?, t.next()?);
    let s = t.next().unwrap_or("00");
    if t.next().is_some()
        || h.len() != 2
        || mi.len() != 2
        || s.len() != 2
        || (hms.len() == 5 && fraction.is_some())
    {
        return None;
    }
    let fraction = fraction.unwrap_or_default();
    let (h, mi, s) = (num(h)?, num(mi)?, num(s)?);
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let millis = format!("{fraction:0<3}")[..3].parse::<i64>().ok()?;
    Some(((days_from_civil(y, mo, da) * 24 + h) * 60 + mi) * 60_000 + s * 1000 + millis)
}

/// Formats Unix ms as `yyyy-MM-ddTHH:mm:ss.SSS` (UTC).
pub fn format_local_date_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_values() {
        assert_eq!(parse_local_date_time("1970-01-01T00:00:00"), Some(0));
        assert_eq!(
            parse_local_date_time("2021-03-01T00:00:00"),
            Some(1_614_556_800_000)
        );
        assert_eq!(
            parse_local_date_time("2022-06-01T13:00:00.123456"),
            Some(1_654_088_400_123)
        );
        assert_eq!(
            parse_local_date_time("2024-02-29T23:59"),
            Some(1_709_251_140_000)
        );
        assert_eq!(
            format_local_date_time(1_654_088_400_123),
            "2022-06-01T13:00:00.123"
        );
        // As Java (checked with `LocalDateTime.parse(s, ISO_LOCAL_DATE_TIME)`): a lower-case
        // `t`, and a dot with no digits after the seconds.
        assert_eq!(
            parse_local_date_time("2022-06-01t13:00:00"),
            Some(1_654_088_400_000)
        );
        assert_eq!(
            parse_local_date_time("2022-06-01T13:00:00."),
            Some(1_654_088_400_000)
        );
        assert_eq!(format_local_date_time(0), "1970-01-01T00:00:00.000");
        for ms in [0, 951_782_400_000, 1_795_564_800_999, 4_102_444_800_000] {
            assert_eq!(parse_local_date_time(&format_local_date_time(ms)), Some(ms));
        }
    }

    #[test]
    fn rejects_what_java_rejects() {
        for bad in [
            "2022-06-01",
            "2022-06-01T13:00:00Z",
            "2022-06-01T13:00:00+01:00",
            "2023-02-29T00:00:00",
            "2022-13-01T00:00:00",
            "2022-06-01T24:00:00",
            "2022-6-01T00:00:00",
            "2022-06-01T13:00.",
            "2022-06-01T13:00.5",
            "2022-06-01T13:00:00.1234567890",
            "1654088400",
            "",
        ] {
            assert_eq!(parse_local_date_time(bad), None, "{bad}");
        }
    }
}
