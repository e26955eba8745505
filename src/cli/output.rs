//! Output as Docker prints it: aligned tables, human sizes and durations,
//! and `--format` (Go templates, [`crate::template`]) for list commands.

use serde_json::Value;

use super::ExitError;
use crate::template::Template;

/// Lays out tab-separated rows like Go's tabwriter with Docker's settings
/// (minimum width 10, padding 3): every cell but the last of a row is
/// padded to its column's width.
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = (cell.chars().count() + 3).max(10);
            if widths.len() <= i {
                widths.resize(i + 1, 0);
            }
            widths[i] = widths[i].max(w);
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(size, 3), UNITS[unit])
}

/// Formats like Go's `%.{digits}g` for values below 1000.
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let mut s = format!("{value:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

/// `units.HumanDuration`: "Less than a second", "3 seconds", "About an hour", "2 weeks".
pub fn human_duration(seconds: f64) -> String {
    let s = seconds as i64;
    if seconds < 1.0 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (seconds / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

/// "2 weeks ago" for an RFC 3339 time; "N/A" when it cannot be read.
pub fn since(rfc3339: Option<&str>) -> String {
    match rfc3339.and_then(parse_time) {
        Some(t) => {
            let secs = (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0;
            format!("{} ago", human_duration(secs.max(0.0)))
        }
        None => "N/A".into(),
    }
}

pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// `units.BytesSize`: binary units, four significant digits, as Docker
/// prints memory (`816KiB`, `23.54GiB`, `3.137MiB`).
pub fn bytes_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{}{}", crate::template::format_g(v, Some(4), 'e'), UNITS[u])
}

/// An RFC 3339 time, a Unix time, or a duration before now (`10s`, `5m`, `2h`).
pub fn parse_when(s: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Some(t) = parse_time(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return chrono::DateTime::from_timestamp(secs as i64, 0)
            .ok_or_else(|| anyhow::anyhow!("invalid time {s:?}"));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid time {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => anyhow::bail!("invalid time {s:?}"),
    };
    Ok(chrono::Utc::now() - chrono::Duration::seconds(secs))
}

/// A `--format` that could not be used: Docker's words and exit status 1
/// (64 for `inspect`, whose caller sets it).
pub fn template_error(e: crate::template::TemplateError, code: i32) -> anyhow::Error {
    ExitError {
        code,
        message: format!("Template parsing error: {e}"),
    }
    .into()
}

/// An inspect command's `-f`, parsed as Docker's inspect does: an empty
/// format is none, one that does not parse is a usage error (64).
pub fn inspect_template(format: Option<&str>) -> anyhow::Result<Option<Template>> {
    format
        .filter(|f| !f.is_empty())
        .map(Template::parse)
        .transpose()
        .map_err(|e| template_error(e, 64))
}

/// Prints what an inspect command found: one indented JSON array, or the
/// template's output for each object, one per line.
pub fn print_inspected(template: Option<&Template>, found: &[Value]) -> anyhow::Result<()> {
    match template {
        Some(t) => {
            for v in found {
                outln!("{}", t.execute(v).map_err(|e| template_error(e, 1))?);
            }
        }
        None => outln!("{}", serde_json::to_string_pretty(found)?),
    }
    Ok(())
}

/// Renders rows of JSON values through `--format` as Docker's list
/// commands do: `table` (the caller's default table), `json` (one JSON
/// object per line), or a template; a template starting with `table`
/// gets a header row (the same template run on each field's column
/// title, from `headers` or the field's name upper-cased) and columns
/// aligned like Go's tabwriter. `\t` and `\n` written literally become
/// a tab and a newline, as in Docker.
pub fn format_rows(
    format: Option<&str>,
    values: &[Value],
    default_table: &str,
    headers: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let source = match format {
        None | Some("table") => default_table.to_string(),
        Some("json") => {
            let mut out = String::new();
            for v in values {
                out.push_str(&crate::template::to_json(v));
                out.push('\n');
            }
            return Ok(out);
        }
        Some(f) => f.to_string(),
    };
    let table = source.starts_with("table");
    let body = if table {
        &source["table".len()..]
    } else {
        &source[..]
    };
    let body = body
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    let template = Template::parse(&body).map_err(|e| template_error(e, 1))?;
    let mut out = String::new();
    if table {
        let titles: serde_json::Map<String, Value> = template
            .fields()
            .into_iter()
            .map(|f| {
                let title = headers(&f).unwrap_or_else(|| f.to_uppercase());
                (f, Value::String(title))
            })
            .collect();
        out.push_str(
            &template
                .execute_header(&Value::Object(titles))
                .map_err(|e| template_error(e, 1))?,
        );
        out.push('\n');
    }
    for v in values {
        out.push_str(&template.execute(v).map_err(|e| template_error(e, 1))?);
        out.push('\n');
    }
    if table {
        let rows: Vec<Vec<String>> = out
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        return Ok(tabulate(&rows));
    }
    Ok(out)
}

/// Prints what [`format_rows`] renders.
pub fn print_formatted(
    format: Option<&str>,
    values: &[Value],
    default_table: &str,
    headers: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let text = format_rows(format, values, default_table, headers)?;
    out!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes_like_docker() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(835_584), "816KiB");
        assert_eq!(bytes_size(25_275_232_256), "23.54GiB");
        assert_eq!(bytes_size(3_289_088), "3.137MiB");
        assert_eq!(bytes_size(1023), "1023B");
        assert_eq!(bytes_size(1_048_575), "1024KiB");
    }

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(109_400_000), "109MB");
        assert_eq!(human_size(7_830_000), "7.83MB");
        assert_eq!(human_size(5_000_000), "5MB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(0.2), "Less than a second");
        assert_eq!(human_duration(3.0), "3 seconds");
        assert_eq!(human_duration(70.0), "About a minute");
        assert_eq!(human_duration(3600.0 * 3.0), "3 hours");
        assert_eq!(human_duration(3600.0 * 24.0 * 15.0), "2 weeks");
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let rows = vec![
            vec!["REPOSITORY".into(), "TAG".into(), "SIZE".into()],
            vec!["debian".into(), "latest".into(), "1MB".into()],
        ];
        assert_eq!(
            tabulate(&rows),
            "REPOSITORY   TAG       SIZE\ndebian       latest    1MB\n"
        );
    }
}
