//! Printing values as Go's fmt package prints the values behind them:
//! `%v` (and so `print`, `println` and an action's output), `printf`'s
//! verbs, and `encoding/json` for Docker's `json` function.

use serde_json::Value;

use super::exec::Val;

/// `fmt.Sprint(v)`: strings as they are, numbers as Go prints int and
/// float64, `[a b]` for slices, `map[k:v]` (sorted keys) for maps,
/// `<nil>` for nil.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(print_value).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", print_value(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        format_g(n.as_f64().unwrap_or(0.0), None, 'e')
    }
}

/// An argument of print/println/printf: Go turns a missing value into nil.
fn arg_value(v: &Val) -> Value {
    v.json().cloned().unwrap_or(Value::Null)
}

/// `fmt.Sprint(args...)`: a space between operands when neither is a string.
pub fn sprint(args: &[Val]) -> String {
    let mut out = String::new();
    let mut previous_string = true;
    for (i, a) in args.iter().enumerate() {
        let v = arg_value(a);
        let is_string = v.is_string();
        if i > 0 && !is_string && !previous_string {
            out.push(' ');
        }
        out.push_str(&print_value(&v));
        previous_string = is_string;
    }
    out
}

/// `fmt.Sprintln(args...)`: spaces between all operands and a newline.
pub fn sprintln(args: &[Val]) -> String {
    let parts: Vec<String> = args.iter().map(|a| print_value(&arg_value(a))).collect();
    format!("{}\n", parts.join(" "))
}

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// `fmt.Sprintf(format, args...)` for the verbs a template uses: `%v %s
/// %q %d %t %f %F %e %E %g %G %x %X %o %b %c %U %%`, flags `- + # 0 space`,
/// width and precision; Go's `%!v(MISSING)`, `%!d(string=x)` and
/// `%!(EXTRA ...)` for mismatches.
pub fn sprintf(format: &str, args: &[Val]) -> String {
    let args: Vec<Value> = args.iter().map(arg_value).collect();
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = number(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(number(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        out.push_str(&format_one(verb, spec, arg));
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", go_type(a), print_value(a)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        other => super::funcs::type_name(other),
    }
}

fn bad_verb(verb: char, v: &Value) -> String {
    match v {
        Value::Null => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", go_type(v), print_value(v)),
    }
}

fn pad(s: String, spec: Spec, numeric: bool) -> String {
    let len = s.chars().count();
    let Some(width) = spec.width.filter(|&w| w > len) else {
        return s;
    };
    let fill = width - len;
    if spec.minus {
        return s + &" ".repeat(fill);
    }
    if spec.zero && numeric {
        // Zeros go after the sign.
        let (sign, digits) = match s.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), s[1..].to_string()),
            _ => (String::new(), s),
        };
        return sign + &"0".repeat(fill) + &digits;
    }
    " ".repeat(fill) + &s
}

fn format_one(verb: char, spec: Spec, v: &Value) -> String {
    // Slices and maps: the verb applies to each element.
    match v {
        Value::Array(items) if verb != 'T' && !(verb == 'v' && spec.sharp) => {
            if matches!(verb, 's' | 'q' | 'x' | 'X') && items.is_empty() {
                return pad("[]".into(), spec, false);
            }
            let parts: Vec<String> = items
                .iter()
                .map(|e| {
                    format_one(
                        verb,
                        Spec {
                            width: spec.width,
                            ..spec
                        },
                        e,
                    )
                })
                .collect();
            return format!("[{}]", parts.join(" "));
        }
        Value::Object(map) if verb != 'T' => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, e)| {
                    format!(
                        "{}:{}",
                        format_one(verb, spec, &Value::String(k.clone())),
                        format_one(verb, spec, e)
                    )
                })
                .collect();
            return format!("map[{}]", parts.join(" "));
        }
        _ => {}
    }
    match verb {
        'T' => pad(go_type(v).to_string(), spec, false),
        'v' => match v {
            Value::String(s) if spec.sharp => pad(quote(s), spec, false),
            Value::Number(n) => format_number('v', spec, n),
            Value::Null => pad("<nil>".into(), spec, false),
            other => pad(print_value(other), spec, false),
        },
        's' => match v {
            Value::String(s) => {
                let s = match spec.precision {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                };
                pad(s, spec, false)
            }
            other => bad_verb(verb, other),
        },
        'q' => match v {
            Value::String(s) => pad(
                if spec.sharp && !s.contains('`') {
                    format!("`{s}`")
                } else {
                    quote(s)
                },
                spec,
                false,
            ),
            Value::Number(n) if n.as_i64().is_some() => {
                let c = n
                    .as_i64()
                    .and_then(|i| u32::try_from(i).ok())
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}');
                pad(format!("'{}'", escape_char(c, '\'')), spec, false)
            }
            other => bad_verb(verb, other),
        },
        't' => match v {
            Value::Bool(b) => pad(b.to_string(), spec, false),
            other => bad_verb(verb, other),
        },
        'x' | 'X' if v.is_string() => {
            let s = v.as_str().unwrap_or_default();
            let hex: String = s
                .bytes()
                .map(|b| {
                    if verb == 'x' {
                        format!("{b:02x}")
                    } else {
                        format!("{b:02X}")
                    }
                })
                .collect();
            pad(hex, spec, false)
        }
        'c' | 'U' | 'd' | 'o' | 'O' | 'b' | 'x' | 'X' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            match v {
                Value::Number(n) => format_number(verb, spec, n),
                other => bad_verb(verb, other),
            }
        }
        other => bad_verb(other, v),
    }
}

fn format_number(verb: char, spec: Spec, n: &serde_json::Number) -> String {
    let sign = |negative: bool| {
        if negative {
            "-"
        } else if spec.plus {
            "+"
        } else if spec.space {
            " "
        } else {
            ""
        }
    };
    if let Some(i) = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)) {
        let magnitude = i.unsigned_abs();
        let body = match verb {
            'v' | 'd' => magnitude.to_string(),
            'o' => format!("{}{magnitude:o}", if spec.sharp { "0" } else { "" }),
            'O' => format!("0o{magnitude:o}"),
            'b' => format!("{magnitude:b}"),
            'x' => format!("{}{magnitude:x}", if spec.sharp { "0x" } else { "" }),
            'X' => format!("{}{magnitude:X}", if spec.sharp { "0X" } else { "" }),
            'c' => {
                return pad(
                    u32::try_from(i)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('\u{fffd}')
                        .to_string(),
                    spec,
                    false,
                )
            }
            'U' => return pad(format!("U+{magnitude:04X}"), spec, false),
            _ => return format_float(verb, spec, i as f64),
        };
        let body = match spec.precision {
            Some(p) if body.len() < p => "0".repeat(p - body.len()) + &body,
            _ => body,
        };
        return pad(
            format!("{}{body}", sign(i < 0)),
            spec,
            spec.precision.is_none(),
        );
    }
    let f = n.as_f64().unwrap_or(0.0);
    match verb {
        'v' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G' => format_float(verb, spec, f),
        other => bad_verb(other, &Value::Number(n.clone())),
    }
}

fn format_float(verb: char, spec: Spec, f: f64) -> String {
    let negative = f.is_sign_negative() && f != 0.0;
    let a = f.abs();
    let body = match verb {
        'e' | 'E' => format_e(a, spec.precision.unwrap_or(6), verb),
        'f' | 'F' => format!("{a:.*}", spec.precision.unwrap_or(6)),
        'g' | 'G' => format_g(a, spec.precision, if verb == 'g' { 'e' } else { 'E' }),
        _ => format_g(a, spec.precision, 'e'),
    };
    let sign = if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    pad(format!("{sign}{body}"), spec, true)
}

/// `%e` with `precision` digits after the point; exponent with a sign and
/// at least two digits, as Go writes it.
fn format_e(a: f64, precision: usize, e: char) -> String {
    let s = format!("{a:.precision$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}{e}{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// `%g` (and `%v` for floats): the shortest representation when no
/// precision is given, with an exponent when it is below -4 or at least
/// the precision (6 for the shortest), as strconv does.
pub fn format_g(a: f64, precision: Option<usize>, e: char) -> String {
    if a.is_nan() {
        return "NaN".into();
    }
    if a.is_infinite() {
        return if a > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let negative = a.is_sign_negative() && a != 0.0;
    let a = a.abs();
    // Digits and exponent, shortest or rounded to the precision.
    let s = match precision {
        None => format!("{a:e}"),
        Some(p) => format!("{a:.*e}", p.max(1) - 1),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if precision.is_some() {
        while digits.len() > 1 && digits.ends_with('0') {
            digits.pop();
        }
    }
    let eprec = match precision {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > digits.len() as i32 && digits.len() as i32 > exp {
                digits.len() as i32
            } else {
                p
            }
        }
    };
    let body = if exp < -4 || exp >= eprec {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        format!("{m}{e}{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let point = (exp + 1) as usize;
        if digits.len() <= point {
            digits.clone() + &"0".repeat(point - digits.len())
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    if negative {
        format!("-{body}")
    } else {
        body
    }
}

/// `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        out.push_str(&escape_char(c, '"'));
    }
    out.push('"');
    out
}

fn escape_char(c: char, quote: char) -> String {
    match c {
        '\u{7}' => "\\a".into(),
        '\u{8}' => "\\b".into(),
        '\u{c}' => "\\f".into(),
        '\n' => "\\n".into(),
        '\r' => "\\r".into(),
        '\t' => "\\t".into(),
        '\u{b}' => "\\v".into(),
        '\\' => "\\\\".into(),
        c if c == quote => format!("\\{c}"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => format!("\\x{:02x}", c as u32),
        c if c.is_control() => {
            if (c as u32) < 0x10000 {
                format!("\\u{:04x}", c as u32)
            } else {
                format!("\\U{:08x}", c as u32)
            }
        }
        c => c.to_string(),
    }
}

/// `encoding/json` as Docker's `json` function writes (HTML not escaped):
/// keys sorted, floats as Go writes them, Go's string escapes.
pub fn to_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_f64() {
                let f = n.as_f64().unwrap_or(0.0);
                let a = f.abs();
                if a != 0.0 && !(1e-6..1e21).contains(&a) {
                    let s = format_e_shortest(f);
                    out.push_str(&s);
                } else {
                    out.push_str(&format!("{f}"));
                }
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

/// Go's JSON exponent form: `1e+21`, `1e-07`.
fn format_e_shortest(f: f64) -> String {
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
