//! The few fixed UTC timestamp formats the service writes on every request, formatted
//! directly (chrono's `format` parses its pattern each time).

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};

/// `YYYYMMDDTHHMMSSZ`, SigV4's `X-Amz-Date`.
pub fn amz_date(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(16);
    let _ = write!(
        s,
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    s
}

/// `YYYYMMDD`, the date of a SigV4 credential scope.
pub fn amz_day(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(8);
    let _ = write!(s, "{:04}{:02}{:02}", t.year(), t.month(), t.day());
    s
}

/// `YYYY-MM-DD`.
pub fn iso_day(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(10);
    let _ = write!(s, "{:04}-{:02}-{:02}", t.year(), t.month(), t.day());
    s
}

/// `YYYY-MM-DDTHH:MM:SS`, with `Z` appended when `zulu`.
pub fn iso_seconds(t: &DateTime<Utc>, zulu: bool) -> String {
    let mut s = String::with_capacity(20);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if zulu {
        s.push('Z');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn same_as_chrono_patterns() {
        for secs in [0i64, 1_763_812_800, 1_763_899_199, 4_102_444_799] {
            let t = Utc.timestamp_opt(secs, 0).single().expect("time");
            assert_eq!(amz_date(&t), t.format("%Y%m%dT%H%M%SZ").to_string());
            assert_eq!(amz_day(&t), t.format("%Y%m%d").to_string());
            assert_eq!(iso_day(&t), t.format("%Y-%m-%d").to_string());
            assert_eq!(
                iso_seconds(&t, true),
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            );
            assert_eq!(
                iso_seconds(&t, false),
                t.format("%Y-%m-%dT%H:%M:%S").to_string()
            );
        }
    }
}
