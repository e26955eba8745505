//! Go's duration syntax (`300ms`, `1.5h`, `2h45m`), as Dockerfiles'
//! HEALTHCHECK flags and the CLI's `--since`/`--until` write it.

/// A Go duration in nanoseconds: one or more numbers (a fraction
/// allowed), each followed by a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`,
/// `h`). No sign, no bare number; `None` for anything else.
pub fn go_duration_ns(value: &str) -> Option<i64> {
    let mut rest = value;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * unit;
    }
    Some(total as i64)
}
