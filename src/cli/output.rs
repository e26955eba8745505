//! Output as Docker prints it: aligned tables, human sizes and durations,
//! and `--format` templates (a subset of Go's text/template: `{{.Field}}`,
//! `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `{{index .Map "key"}}`,
//! `{{join .List ","}}`, `{{lower .X}}`, `{{upper .X}}`, and the `table`
//! prefix).

use serde_json::Value;

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

#[derive(Debug, thiserror::Error)]
#[error("template parsing error: {0}")]
pub struct TemplateError(String);

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Vec<String>),
}

/// A parsed `--format` template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// Whether the template began with `table`.
    pub table: bool,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut text = source.replace("\\t", "\t").replace("\\n", "\n");
        let mut table = false;
        if let Some(rest) = text.strip_prefix("table") {
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                table = true;
                text = rest.trim_start().to_string();
            }
        }
        let mut nodes = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                nodes.push(Node::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError(format!("unclosed action in {source:?}")))?;
            let inner = after[..end]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            nodes.push(Node::Action(split_words(inner)?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_string()));
        }
        Ok(Template { nodes, table })
    }

    /// The header row for table mode: each action's field name through
    /// `headers` (e.g. ID -> "IMAGE ID"), upper-cased otherwise.
    pub fn header(&self, headers: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(words) => {
                    let field = words
                        .iter()
                        .rev()
                        .find(|w| w.starts_with('.'))
                        .cloned()
                        .unwrap_or_default();
                    let name = field.trim_start_matches('.');
                    out.push_str(&headers(name).unwrap_or_else(|| name.to_uppercase()));
                }
            }
        }
        out
    }

    pub fn render(&self, value: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(words) => out.push_str(&eval(words, value)?),
            }
        }
        Ok(out)
    }
}

fn split_words(inner: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::from("\"");
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => {
                        if let Some(n) = chars.next() {
                            s.push(match n {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                    }
                    Some(ch) => s.push(ch),
                    None => return Err(TemplateError(format!("unterminated string in {inner:?}"))),
                }
            }
            words.push(s);
        } else {
            let mut s = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                s.push(ch);
                chars.next();
            }
            words.push(s);
        }
    }
    if words.is_empty() {
        return Err(TemplateError("empty action".into()));
    }
    Ok(words)
}

fn lookup<'a>(path: &str, value: &'a Value) -> Result<Option<&'a Value>, TemplateError> {
    if path == "." {
        return Ok(Some(value));
    }
    let mut current = value;
    for part in path.trim_start_matches('.').split('.') {
        match current {
            Value::Object(map) => match map.get(part) {
                Some(v) => current = v,
                None => return Ok(None),
            },
            Value::Null => return Ok(None),
            _ => {
                return Err(TemplateError(format!(
                    "can't evaluate field {part} in type {}",
                    type_name(current)
                )))
            }
        }
    }
    Ok(Some(current))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
        Value::Null => "nil",
    }
}

fn argument(word: &str, value: &Value) -> Result<Value, TemplateError> {
    if let Some(s) = word.strip_prefix('"') {
        return Ok(Value::String(s.to_string()));
    }
    if word.starts_with('.') {
        return Ok(lookup(word, value)?.cloned().unwrap_or(Value::Null));
    }
    if let Ok(n) = word.parse::<i64>() {
        return Ok(Value::from(n));
    }
    Err(TemplateError(format!("function {word:?} not defined")))
}

fn eval(words: &[String], value: &Value) -> Result<String, TemplateError> {
    let args = |n: usize| -> Result<Vec<Value>, TemplateError> {
        if words.len() != n + 1 {
            return Err(TemplateError(format!(
                "wrong number of args for {}: want {n} got {}",
                words[0],
                words.len() - 1
            )));
        }
        words[1..].iter().map(|w| argument(w, value)).collect()
    };
    match words[0].as_str() {
        "json" => {
            let a = args(1)?;
            Ok(serde_json::to_string(&a[0]).unwrap_or_default())
        }
        "index" => {
            let a = args(2)?;
            let item = match (&a[0], &a[1]) {
                (Value::Object(m), Value::String(k)) => m.get(k).cloned(),
                (Value::Array(l), Value::Number(n)) => {
                    let i = n.as_u64().unwrap_or(u64::MAX) as usize;
                    Some(l.get(i).cloned().ok_or_else(|| {
                        TemplateError(format!("error calling index: index out of range: {i}"))
                    })?)
                }
                _ => None,
            };
            Ok(item
                .map(|v| go_print(&v))
                .unwrap_or_else(|| "<no value>".into()))
        }
        "join" => {
            let a = args(2)?;
            let sep = a[1].as_str().unwrap_or("");
            match &a[0] {
                Value::Array(items) => Ok(items.iter().map(go_print).collect::<Vec<_>>().join(sep)),
                Value::Null => Ok(String::new()),
                other => Err(TemplateError(format!(
                    "join: wrong type {}",
                    type_name(other)
                ))),
            }
        }
        "lower" => Ok(go_print(&args(1)?[0]).to_lowercase()),
        "upper" => Ok(go_print(&args(1)?[0]).to_uppercase()),
        "println" => Ok(format!(
            "{}\n",
            words[1..]
                .iter()
                .map(|w| argument(w, value).map(|v| go_print(&v)))
                .collect::<Result<Vec<_>, _>>()?
                .join(" ")
        )),
        field if field.starts_with('.') => {
            if words.len() != 1 {
                return Err(TemplateError(format!(
                    "can't give argument to non-function {field}"
                )));
            }
            Ok(match lookup(field, value)? {
                Some(v) => go_print(v),
                None => "<no value>".into(),
            })
        }
        other => Err(TemplateError(format!("function {other:?} not defined"))),
    }
}

/// Prints a value the way Go's `%v` prints the Go value behind it.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_print).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => {
            format!(
                "map[{}]",
                map.iter()
                    .map(|(k, v)| format!("{k}:{}", go_print(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// Prints rows of JSON values through `--format`: `table` (the default
/// table built by the caller), `json` (one JSON object per line), or a
/// template.
pub fn print_formatted(
    format: Option<&str>,
    values: &[Value],
    default_table: &str,
    headers: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let source = match format {
        None | Some("table") => default_table.to_string(),
        Some("json") => {
            for v in values {
                outln!("{}", serde_json::to_string(v)?);
            }
            return Ok(());
        }
        Some(f) => f.to_string(),
    };
    let template = Template::parse(&source)?;
    let mut lines = Vec::new();
    if template.table {
        lines.push(template.header(headers));
    }
    for v in values {
        lines.push(template.render(v)?);
    }
    if template.table {
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        out!("{}", tabulate(&rows));
    } else {
        for l in lines {
            outln!("{l}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn templates() {
        let v = json!({"Repository": "debian", "Tag": "latest", "Config": {"Cmd": ["sh", "-c", "x"], "Labels": {"a": "b"}}});
        let t = Template::parse("{{.Repository}}:{{.Tag}}").unwrap();
        assert_eq!(t.render(&v).unwrap(), "debian:latest");
        assert_eq!(
            Template::parse("{{.Config.Cmd}}")
                .unwrap()
                .render(&v)
                .unwrap(),
            "[sh -c x]"
        );
        assert_eq!(
            Template::parse("{{json .Config.Cmd}}")
                .unwrap()
                .render(&v)
                .unwrap(),
            r#"["sh","-c","x"]"#
        );
        assert_eq!(
            Template::parse(r#"{{index .Config.Labels "a"}}"#)
                .unwrap()
                .render(&v)
                .unwrap(),
            "b"
        );
        assert_eq!(
            Template::parse(r#"{{join .Config.Cmd ","}}"#)
                .unwrap()
                .render(&v)
                .unwrap(),
            "sh,-c,x"
        );
        assert!(Template::parse("{{.Repository").is_err());
        assert!(Template::parse("{{nope .X}}").unwrap().render(&v).is_err());
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
