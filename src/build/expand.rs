//! Variable expansion as Docker's shell lexer does it, for the
//! instructions that expand (ADD, ARG, COPY, ENV, EXPOSE, FROM, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR and their flags): quotes are removed,
//! the escape character escapes, and `$v`, `${v}`, `${v:-w}`, `${v-w}`,
//! `${v:+w}`, `${v+w}`, `${v:?w}`, `${v?w}`, `${v#p}`, `${v##p}`,
//! `${v%p}`, `${v%%p}`, `${v/p/r}`, `${v//p/r}` are replaced. Every
//! lookup within one instruction sees the same variables (the caller
//! passes the environment as it was before the instruction).
//! RUN, CMD and ENTRYPOINT are not expanded: the shell does that.

use std::collections::HashMap;

/// The variables an instruction sees.
pub type Vars = HashMap<String, String>;

/// Expands one word (quotes removed).
pub fn expand_word(text: &str, vars: &Vars, escape: char) -> Result<String, String> {
    let mut lexer = Lexer::new(text, vars, escape);
    let (word, _) = lexer.process_until(None)?;
    Ok(word)
}

/// Expands and splits into words on unquoted whitespace (quotes removed).
pub fn expand_words(text: &str, vars: &Vars, escape: char) -> Result<Vec<String>, String> {
    let mut lexer = Lexer::new(text, vars, escape);
    let (_, words) = lexer.process_until(None)?;
    Ok(words)
}

/// Splits on unquoted whitespace keeping quotes and escapes (Docker's
/// `parseWords`), for `name=value` lists before expansion.
pub fn split_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
                word.push(ch);
                continue;
            }
            if ch == escape && q != '\'' {
                match chars.next() {
                    Some(next) => {
                        word.push(ch);
                        word.push(next);
                    }
                    None => quote = None,
                }
                continue;
            }
            word.push(ch);
            continue;
        }
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        if ch.is_whitespace() {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
        }
        if ch == escape {
            match chars.next() {
                Some(next) => {
                    word.push(ch);
                    word.push(next);
                }
                None => continue,
            }
            continue;
        }
        word.push(ch);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Words being collected: what the expansion split, what quoting kept.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    current: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word {
                self.words.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.current.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.current.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if self.in_word {
            self.words.push(self.current);
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    vars: &'a Vars,
    escape: char,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, vars: &'a Vars, escape: char) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            vars,
            escape,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until `stop` (consumed) or the end.
    fn process_until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' => {
                    let s = self.single_quoted()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.double_quoted()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        self.next();
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        self.next();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.next();
                    if c == self.escape {
                        match self.peek() {
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.next();
                                out.push(n);
                            }
                            _ => out.push(c),
                        }
                    } else {
                        out.push(c);
                    }
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if "@*#?-$!0".contains(c) {
                self.next();
                return c.to_string();
            }
        }
        while let Some(c) = self.peek() {
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<&'a String> {
        self.vars.get(name)
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup(&name).cloned().unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.name();
        let value = self.lookup(&name).cloned();
        let set = value.is_some();
        let value = value.unwrap_or_default();
        match self.next() {
            Some('}') => Ok(value),
            Some(':') => {
                let modifier = self.next();
                let (word, _) = self.process_until(Some('}'))?;
                match modifier {
                    Some('+') => Ok(if value.is_empty() {
                        String::new()
                    } else {
                        word
                    }),
                    Some('-') => Ok(if value.is_empty() { word } else { value }),
                    Some('?') if value.is_empty() => Err(if word.is_empty() {
                        format!("{name}: is not allowed to be empty")
                    } else {
                        format!("{name}: {word}")
                    }),
                    Some('?') => Ok(value),
                    other => Err(format!(
                        "unsupported modifier ({}) in substitution",
                        other.map(String::from).unwrap_or_default()
                    )),
                }
            }
            Some('+') => {
                let (word, _) = self.process_until(Some('}'))?;
                Ok(if set { word } else { String::new() })
            }
            Some('-') => {
                let (word, _) = self.process_until(Some('}'))?;
                Ok(if set { value } else { word })
            }
            Some('?') => {
                let (word, _) = self.process_until(Some('}'))?;
                if set {
                    Ok(value)
                } else if word.is_empty() {
                    Err(format!("{name}: is not allowed to be unset"))
                } else {
                    Err(format!("{name}: {word}"))
                }
            }
            Some(c @ ('#' | '%')) => {
                let longest = self.peek() == Some(c);
                if longest {
                    self.next();
                }
                let (pattern, _) = self.process_until(Some('}'))?;
                Ok(trim_pattern(&value, &pattern, c == '#', longest))
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, _) = self.process_until(Some('/'))?;
                let (replacement, _) = self.process_until(Some('}'))?;
                Ok(replace_pattern(&value, &pattern, &replacement, all))
            }
            Some(c) => Err(format!("unsupported modifier ({c}) in substitution")),
            None => Err("syntax error: missing '}'".into()),
        }
    }
}

/// `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`.
fn trim_pattern(value: &str, pattern: &str, prefix: bool, longest: bool) -> String {
    let bounds: Vec<usize> = value
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(value.len()))
        .collect();
    if prefix {
        let mut order: Vec<usize> = bounds.clone();
        if longest {
            order.reverse();
        }
        for end in order {
            if glob_match(pattern, &value[..end]) {
                return value[end..].to_string();
            }
        }
    } else {
        let mut order = bounds;
        if !longest {
            order.reverse();
        }
        for start in order {
            if glob_match(pattern, &value[start..]) {
                return value[..start].to_string();
            }
        }
    }
    value.to_string()
}

/// `${v/p/r}` (first match, longest) and `${v//p/r}` (every match).
fn replace_pattern(value: &str, pattern: &str, replacement: &str, all: bool) -> String {
    if pattern.is_empty() {
        return value.to_string();
    }
    let bounds: Vec<usize> = value
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(value.len()))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < bounds.len() - 1 {
        let start = bounds[i];
        let hit = bounds[i + 1..]
            .iter()
            .rev()
            .find(|&&end| glob_match(pattern, &value[start..end]));
        match hit {
            Some(&end) => {
                out.push_str(replacement);
                if !all {
                    out.push_str(&value[end..]);
                    return out;
                }
                i = bounds
                    .iter()
                    .position(|&b| b == end)
                    .unwrap_or(bounds.len() - 1);
            }
            None => {
                out.push_str(&value[start..bounds[i + 1]]);
                i += 1;
            }
        }
    }
    out
}

/// Shell pattern matching: `*`, `?`, `[...]`, `\x`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    match_from(&p, &t)
}

fn match_from(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|k| match_from(&p[1..], &t[k..])),
        Some('?') => !t.is_empty() && match_from(&p[1..], &t[1..]),
        Some('[') => {
            let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|x| x + 2) else {
                return !t.is_empty() && t[0] == '[' && match_from(&p[1..], &t[1..]);
            };
            let Some(&c) = t.first() else { return false };
            let mut set = &p[1..close];
            let negate = matches!(set.first(), Some('!' | '^'));
            if negate {
                set = &set[1..];
            }
            let mut hit = false;
            let mut k = 0;
            while k < set.len() {
                if k + 2 < set.len() && set[k + 1] == '-' {
                    hit |= set[k] <= c && c <= set[k + 2];
                    k += 3;
                } else {
                    hit |= set[k] == c;
                    k += 1;
                }
            }
            hit != negate && match_from(&p[close + 1..], &t[1..])
        }
        Some('\\') if p.len() > 1 => !t.is_empty() && t[0] == p[1] && match_from(&p[2..], &t[1..]),
        Some(c) => !t.is_empty() && t[0] == *c && match_from(&p[1..], &t[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [
            ("a", "hello"),
            ("empty", ""),
            ("path", "/usr/local/bin/tool.tar.gz"),
            ("sp", "x y"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn w(s: &str) -> String {
        expand_word(s, &vars(), '\\').unwrap()
    }

    #[test]
    fn forms() {
        assert_eq!(w("$a"), "hello");
        assert_eq!(w("${a}-x"), "hello-x");
        assert_eq!(w("${nope:-def}"), "def");
        assert_eq!(w("${empty:-def}"), "def");
        assert_eq!(w("${empty-def}"), "");
        assert_eq!(w("${nope-def}"), "def");
        assert_eq!(w("${a:+alt}"), "alt");
        assert_eq!(w("${empty:+alt}"), "");
        assert_eq!(w("${empty+alt}"), "alt");
        assert_eq!(w("${nope+alt}"), "");
        assert_eq!(w("${path#*/}"), "usr/local/bin/tool.tar.gz");
        assert_eq!(w("${path##*/}"), "tool.tar.gz");
        assert_eq!(w("${path%.*}"), "/usr/local/bin/tool.tar");
        assert_eq!(w("${path%%.*}"), "/usr/local/bin/tool");
        assert_eq!(w("${a/l/L}"), "heLlo");
        assert_eq!(w("${a//l/L}"), "heLLo");
        assert_eq!(w("'$a' \"$a\" \\$a"), "$a hello $a");
        assert_eq!(w("$"), "$");
        assert!(expand_word("${nope?must be set}", &vars(), '\\').is_err());
        assert!(expand_word("${a", &vars(), '\\').is_err());
    }

    #[test]
    fn words_split_expansions_not_quotes() {
        let v = vars();
        assert_eq!(
            expand_words("$sp \"$sp\" z", &v, '\\').unwrap(),
            vec!["x", "y", "x y", "z"]
        );
        assert_eq!(
            split_words("a=\"b c\" d=e\\ f", '\\'),
            vec!["a=\"b c\"", "d=e\\ f"]
        );
    }
}
