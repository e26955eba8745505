//! `--since` and `--until` values, as Docker's client reads them
//! (moby api/types/time.GetTimestamp): a Unix time in seconds with an
//! optional fraction, an RFC 3339 date-time (the zone optional: local),
//! a date, or a Go duration (`10m`, `1h30m`, `1.5s`) meaning that long
//! before now.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

#[derive(Debug, thiserror::Error)]
#[error("failed to parse value as time or duration: \"{0}\"")]
pub struct TimeError(String);

/// The time `value` names, in nanoseconds since the epoch.
pub fn parse_timestamp(value: &str, now: DateTime<Utc>) -> Result<i64, TimeError> {
    let bad = || TimeError(value.to_string());
    let nanos = |t: DateTime<Utc>| t.timestamp_nanos_opt().ok_or_else(bad);
    if let Some(d) = crate::duration::go_duration_ns(value) {
        let then = now - chrono::Duration::nanoseconds(d);
        return nanos(then);
    }
    if let Some((secs, frac)) = unix_parts(value) {
        return Ok(secs.saturating_mul(1_000_000_000).saturating_add(frac));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return nanos(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            let local = Local.from_local_datetime(&t).earliest().ok_or_else(bad)?;
            return nanos(local.with_timezone(&Utc));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?;
        let local = Local.from_local_datetime(&t).earliest().ok_or_else(bad)?;
        return nanos(local.with_timezone(&Utc));
    }
    Err(bad())
}

/// `1606876000` or `1606876000.123`: seconds and nanoseconds.
fn unix_parts(value: &str) -> Option<(i64, i64)> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let frac_nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some((secs.parse().ok()?, frac_nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_docker_takes() {
        let now = Utc.timestamp_opt(1_000_000, 0).unwrap();
        assert_eq!(
            parse_timestamp("10m", now).unwrap(),
            (1_000_000 - 600) * 1_000_000_000
        );
        assert_eq!(
            parse_timestamp("1h30m", now).unwrap(),
            (1_000_000 - 5400) * 1_000_000_000
        );
        assert_eq!(parse_timestamp("12.5", now).unwrap(), 12_500_000_000);
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:10Z", now).unwrap(),
            10_000_000_000
        );
        assert!(parse_timestamp("yesterday", now).is_err());
        assert!(parse_timestamp("", now).is_err());
    }
}
