//! Calendar days: unix days (days since 1970-01-01, UTC) as `YYYY-MM-DD` and back, for the
//! figures per day and the pages' dates. Owns nothing; calls nothing.

/// `YYYY-MM-DD` of a unix day (days since 1970-01-01, UTC), the way every figure per day and every page shows a date.
pub fn day_label(day: u64) -> String {
    // Howard Hinnant's civil-from-days, for days on or after the epoch.
    let z = day as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC, the way pages and messages show a moment.
pub fn moment(at: u64) -> String {
    let secs = at % 86_400;
    format!(
        "{} {:02}:{:02}:{:02}",
        day_label(at / 86_400),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The unix day of a `YYYY-MM-DD` date (UTC), if it is one on or after 1970-01-01.
pub fn parse_date(text: &str) -> Option<u64> {
    let mut parts = text.trim().splitn(3, '-');
    let mut next = |len: usize| {
        parts
            .next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
    };
    let (y, m, d) = (next(4)?, next(2)?, next(2)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days-from-civil, the inverse of `day_label`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_labelled_as_calendar_dates() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(day_label(19_782), "2024-02-29");
        assert_eq!(day_label(20_787), "2026-11-30");
        assert_eq!(day_label(4_107_542_399 / 86_400), "2100-02-28");
    }
}
