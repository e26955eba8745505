//! The functions a template may call: Go's builtins (`and`, `or` and the
//! rest of text/template's list) and the ones Docker's client adds
//! (`json`, `split`, `join`, `title`, `lower`, `upper`, `pad`,
//! `truncate`), with Go's argument checks and error texts. In a table
//! header Docker's functions return their first argument unchanged, as
//! Docker's header functions do.

use serde_json::Value;

use super::exec::{truth, Val};
use super::print::{sprint, sprintf, sprintln, to_json};

const BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge", "print",
    "printf", "println", "html", "js", "urlquery", "call",
];
const DOCKER: &[&str] = &[
    "json", "split", "join", "title", "lower", "upper", "pad", "truncate",
];

pub fn exists(name: &str) -> bool {
    BUILTINS.contains(&name) || DOCKER.contains(&name)
}

/// Go's name for the type behind a value, typed as Docker's structs type
/// it (whole numbers int, arrays of strings []string, ...).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(n) if n.is_u64() && n.as_i64().is_none() => "uint64",
        Value::Number(_) => "int",
        Value::Array(a) if a.iter().all(Value::is_string) => "[]string",
        Value::Array(_) => "[]interface {}",
        Value::Object(m) if m.values().all(Value::is_string) => "map[string]string",
        Value::Object(_) => "map[string]interface {}",
        Value::Null => "interface {}",
    }
}

fn want_args(name: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn string_arg(v: &Val) -> Result<String, String> {
    match v {
        Val::Json(Value::String(s)) => Ok(s.clone()),
        Val::Missing => Err("invalid value; expected string".into()),
        Val::Json(other) => Err(format!(
            "wrong type for value; expected string; got {}",
            type_name(other)
        )),
    }
}

fn int_arg(v: &Val) -> Result<i64, String> {
    match v {
        Val::Json(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| {
                format!(
                    "wrong type for value; expected int; got {}",
                    type_name(&Value::Number(n.clone()))
                )
            }),
        Val::Missing => Err("invalid value; expected int".into()),
        Val::Json(other) => Err(format!(
            "wrong type for value; expected int; got {}",
            type_name(other)
        )),
    }
}

fn string_value(s: impl Into<String>) -> Val {
    Val::Json(Value::String(s.into()))
}

/// Calls function `name` (not `and`/`or`, which the evaluator runs).
pub fn call(name: &str, args: &[Val], header: bool) -> Result<Val, String> {
    if header && DOCKER.contains(&name) {
        let n = match name {
            "pad" => 3,
            "split" | "join" | "truncate" => 2,
            _ => 1,
        };
        want_args(name, args, n)?;
        return Ok(string_value(string_arg(&args[0])?));
    }
    match name {
        "not" => {
            want_args(name, args, 1)?;
            Ok(Val::Json(Value::Bool(!truth(&args[0]))))
        }
        "len" => {
            want_args(name, args, 1)?;
            let n = match &args[0] {
                Val::Json(Value::String(s)) => s.len(),
                Val::Json(Value::Array(a)) => a.len(),
                Val::Json(Value::Object(m)) => m.len(),
                Val::Missing | Val::Json(Value::Null) => return Err("len of nil pointer".into()),
                Val::Json(other) => return Err(format!("len of type {}", type_name(other))),
            };
            Ok(Val::Json(Value::from(n as i64)))
        }
        "index" => index(args),
        "slice" => slice(args),
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let mut found = false;
            for b in &args[1..] {
                if equal(&args[0], b)? {
                    found = true;
                    break;
                }
            }
            Ok(Val::Json(Value::Bool(found)))
        }
        "ne" => {
            want_args(name, args, 2)?;
            Ok(Val::Json(Value::Bool(!equal(&args[0], &args[1])?)))
        }
        "lt" | "le" | "gt" | "ge" => {
            want_args(name, args, 2)?;
            let less = less(&args[0], &args[1])?;
            let result = match name {
                "lt" => less,
                "ge" => !less,
                _ => {
                    let le = less || equal(&args[0], &args[1])?;
                    if name == "le" {
                        le
                    } else {
                        !le
                    }
                }
            };
            Ok(Val::Json(Value::Bool(result)))
        }
        "print" => Ok(string_value(sprint(args))),
        "println" => Ok(string_value(sprintln(args))),
        "printf" => {
            if args.is_empty() {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            }
            let format = string_arg(&args[0])?;
            Ok(string_value(sprintf(&format, &args[1..])))
        }
        "html" => Ok(string_value(html_escape(&sprint(args)))),
        "js" => Ok(string_value(js_escape(&sprint(args)))),
        "urlquery" => Ok(string_value(query_escape(&sprint(args)))),
        "call" => match args.first() {
            None => Err("wrong number of args for call: want at least 1 got 0".into()),
            Some(_) => Err("call of a value that is not a function".into()),
        },
        "json" => {
            want_args(name, args, 1)?;
            Ok(string_value(to_json(
                args[0].json().unwrap_or(&Value::Null),
            )))
        }
        "split" => {
            want_args(name, args, 2)?;
            let s = string_arg(&args[0])?;
            let sep = string_arg(&args[1])?;
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep.as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect()
            };
            Ok(Val::Json(Value::Array(parts)))
        }
        "join" => {
            want_args(name, args, 2)?;
            let sep = string_arg(&args[1])?;
            let items: Vec<String> = match &args[0] {
                Val::Missing | Val::Json(Value::Null) => Vec::new(),
                Val::Json(Value::Array(a)) if a.iter().all(Value::is_string) => a
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect(),
                Val::Json(other) => {
                    return Err(format!(
                        "wrong type for value; expected []string; got {}",
                        type_name(other)
                    ))
                }
            };
            Ok(string_value(items.join(&sep)))
        }
        "title" => {
            want_args(name, args, 1)?;
            Ok(string_value(title(&string_arg(&args[0])?)))
        }
        "lower" => {
            want_args(name, args, 1)?;
            Ok(string_value(string_arg(&args[0])?.to_lowercase()))
        }
        "upper" => {
            want_args(name, args, 1)?;
            Ok(string_value(string_arg(&args[0])?.to_uppercase()))
        }
        "pad" => {
            want_args(name, args, 3)?;
            let s = string_arg(&args[0])?;
            let prefix = int_arg(&args[1])?;
            let suffix = int_arg(&args[2])?;
            if s.is_empty() {
                return Ok(string_value(s));
            }
            if prefix < 0 || suffix < 0 {
                return Err("strings: negative Repeat count".into());
            }
            Ok(string_value(format!(
                "{}{s}{}",
                " ".repeat(prefix as usize),
                " ".repeat(suffix as usize)
            )))
        }
        "truncate" => {
            want_args(name, args, 2)?;
            let s = string_arg(&args[0])?;
            let n = int_arg(&args[1])?;
            if (s.len() as i64) < n {
                return Ok(string_value(s));
            }
            if n < 0 {
                return Err(format!("slice bounds out of range [:{n}]"));
            }
            let bytes = &s.as_bytes()[..n as usize];
            Ok(string_value(String::from_utf8_lossy(bytes).into_owned()))
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

#[derive(PartialEq, Clone, Copy, Debug)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Uint,
    Float,
    Str,
    Other,
}

fn kind(v: &Val) -> Kind {
    match v {
        Val::Missing | Val::Json(Value::Null) => Kind::Invalid,
        Val::Json(Value::Bool(_)) => Kind::Bool,
        Val::Json(Value::Number(n)) if n.is_f64() => Kind::Float,
        Val::Json(Value::Number(n)) if n.as_i64().is_some() => Kind::Int,
        Val::Json(Value::Number(_)) => Kind::Uint,
        Val::Json(Value::String(_)) => Kind::Str,
        Val::Json(_) => Kind::Other,
    }
}

fn num(v: &Val) -> (i128, f64) {
    match v {
        Val::Json(Value::Number(n)) => (
            n.as_i64()
                .map(i128::from)
                .or(n.as_u64().map(i128::from))
                .unwrap_or(0),
            n.as_f64().unwrap_or(0.0),
        ),
        _ => (0, 0.0),
    }
}

fn equal(a: &Val, b: &Val) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    if ka != kb {
        return match (ka, kb) {
            (Kind::Int | Kind::Uint, Kind::Int | Kind::Uint) => Ok(num(a).0 == num(b).0),
            (Kind::Invalid, _) | (_, Kind::Invalid) => Ok(false),
            _ => Err("incompatible types for comparison".into()),
        };
    }
    Ok(match ka {
        Kind::Invalid => true,
        Kind::Bool | Kind::Str => a == b,
        Kind::Int | Kind::Uint => num(a).0 == num(b).0,
        Kind::Float => num(a).1 == num(b).1,
        Kind::Other => {
            let t = a.json().map(type_name).unwrap_or_default();
            return Err(format!("non-comparable type {t}"));
        }
    })
}

fn less(a: &Val, b: &Val) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    for k in [ka, kb] {
        if matches!(k, Kind::Invalid | Kind::Bool | Kind::Other) {
            return Err("invalid type for comparison".into());
        }
    }
    if ka != kb {
        return match (ka, kb) {
            (Kind::Int | Kind::Uint, Kind::Int | Kind::Uint) => Ok(num(a).0 < num(b).0),
            _ => Err("incompatible types for comparison".into()),
        };
    }
    Ok(match ka {
        Kind::Str => a.json().and_then(Value::as_str) < b.json().and_then(Value::as_str),
        Kind::Float => num(a).1 < num(b).1,
        _ => num(a).0 < num(b).0,
    })
}

fn index_arg(v: &Val, cap: usize, inclusive: bool) -> Result<usize, String> {
    match v {
        Val::Json(Value::Number(n)) if !n.is_f64() => {
            let x = n.as_i64().unwrap_or(i64::MAX);
            if x < 0 || (x as u64) > cap as u64 || (!inclusive && x as u64 == cap as u64) {
                return Err(format!("index out of range: {x}"));
            }
            Ok(x as usize)
        }
        Val::Missing | Val::Json(Value::Null) => Err("cannot index slice/array with nil".into()),
        Val::Json(other) => Err(format!(
            "cannot index slice/array with type {}",
            type_name(other)
        )),
    }
}

fn index(args: &[Val]) -> Result<Val, String> {
    let Some(first) = args.first() else {
        return Err("wrong number of args for index: want at least 1 got 0".into());
    };
    let mut item = match first {
        Val::Missing | Val::Json(Value::Null) => return Err("index of untyped nil".into()),
        Val::Json(v) => v.clone(),
    };
    for key in &args[1..] {
        item = match item {
            Value::Array(a) => {
                let i = index_arg(key, a.len(), false)?;
                a[i].clone()
            }
            Value::String(s) => {
                let i = index_arg(key, s.len(), false)?;
                Value::from(s.as_bytes()[i] as i64)
            }
            Value::Object(m) => {
                let k = match key {
                    Val::Json(Value::String(k)) => k,
                    Val::Json(other) => {
                        return Err(format!(
                            "value has type {}; should be string",
                            type_name(other)
                        ))
                    }
                    Val::Missing => return Err("value is nil; should be of type string".into()),
                };
                let all_strings = m.values().all(Value::is_string);
                match m.get(k) {
                    Some(v) => v.clone(),
                    // The zero value of the map's element type: "" for a
                    // map of strings, a nil interface (no value) otherwise.
                    None if all_strings => Value::String(String::new()),
                    None => return Ok(Val::Missing),
                }
            }
            Value::Null => return Err("index of nil pointer".into()),
            other => return Err(format!("can't index item of type {}", type_name(&other))),
        };
    }
    Ok(Val::Json(item))
}

fn slice(args: &[Val]) -> Result<Val, String> {
    let Some(first) = args.first() else {
        return Err("wrong number of args for slice: want at least 1 got 0".into());
    };
    let indexes = &args[1..];
    let item = match first {
        Val::Missing | Val::Json(Value::Null) => return Err("slice of untyped nil".into()),
        Val::Json(v) => v,
    };
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let len = match item {
        Value::String(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        Value::Array(a) => a.len(),
        other => return Err(format!("can't slice item of type {}", type_name(other))),
    };
    let mut idx = [0, len, len];
    for (i, index) in indexes.iter().enumerate() {
        idx[i] = index_arg(index, len, true)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(Val::Json(match item {
        Value::String(s) => {
            Value::String(String::from_utf8_lossy(&s.as_bytes()[idx[0]..idx[1]]).into_owned())
        }
        Value::Array(a) => Value::Array(a[idx[0]..idx[1]].to_vec()),
        _ => Value::Null,
    }))
}

/// `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut previous = ' ';
    for c in s.chars() {
        if separator(previous) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        previous = c;
    }
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
