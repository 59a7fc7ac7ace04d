//! Timestamps as people write them: RFC 3339 in UTC, or microseconds since the epoch.

use eventloom_core::model::Timestamp;

use crate::{Error, Result};

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// `2026-12-01T09:30:00.250000Z` (whole seconds without the fraction).
pub(crate) fn format(at: Timestamp) -> String {
    let micros = at.as_micros();
    let seconds = micros.div_euclid(MICROS_PER_SECOND);
    let fraction = micros.rem_euclid(MICROS_PER_SECOND);
    let (days, of_day) = (seconds.div_euclid(SECONDS_PER_DAY), seconds.rem_euclid(SECONDS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    match fraction {
        0 => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
        f => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{f:06}Z"),
    }
}

/// Reads `text`: microseconds since the epoch (digits alone), or an RFC 3339 date and time
/// with `Z` or an offset (`2026-12-01T10:30:00+01:00`), with up to 6 digits of fraction.
pub(crate) fn parse(text: &str) -> Result<Timestamp> {
    let bad = || {
        Error::Usage(format!(
            "not a time: {text:?} (give RFC 3339 like 2026-12-01T09:30:00Z, or microseconds since the epoch)"
        ))
    };
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed.parse::<i64>().map(Timestamp::from_micros).map_err(|_| bad());
    }
    let bytes = trimmed.as_bytes();
    if bytes.len() < 20 || !bytes.is_ascii() {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64> {
        let part = &trimmed[range];
        if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().map_err(|_| bad()) } else { Err(bad()) }
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| bytes[i] != c) || !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 {
        return Err(bad());
    }
    // A leap second reads as the last second of its minute.
    let second = second.min(59);
    let mut rest = &trimmed[19..];
    let mut fraction = 0;
    if let Some(digits) = rest.strip_prefix('.') {
        let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
        if end == 0 || end > 9 {
            return Err(bad());
        }
        let micros = &digits[..end.min(6)];
        fraction = micros.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(6 - u32::try_from(micros.len()).unwrap_or(6));
        rest = &digits[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let (sign, hhmm) = match rest.as_bytes().first() {
                Some(b'+') => (1, &rest[1..]),
                Some(b'-') => (-1, &rest[1..]),
                _ => return Err(bad()),
            };
            let (h, m) = hhmm.split_once(':').ok_or_else(bad)?;
            if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset;
    Ok(Timestamp::from_micros(seconds * MICROS_PER_SECOND + fraction))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a number of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_reads_back() {
        assert_eq!(format(Timestamp::from_micros(0)), "1970-01-01T00:00:00Z");
        let t = parse("2026-12-01T09:30:00.25Z").unwrap();
        assert_eq!(format(t), "2026-12-01T09:30:00.250000Z");
        assert_eq!(parse("2026-12-01T10:30:00.25+01:00").unwrap(), t);
        assert_eq!(parse(&t.as_micros().to_string()).unwrap(), t);
        assert_eq!(parse("2024-02-29T23:59:59Z").unwrap().as_micros(), 1_709_251_199_000_000);
        assert_eq!(format(Timestamp::from_micros(-1)), "1969-12-31T23:59:59.999999Z");
        for days in [-800_000, -1, 0, 1, 59, 365, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in
            ["", "yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-12-01T09:30:00", "2026-12-01", "-5"]
        {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.status(), 2, "{bad:?}");
        }
    }
}
