//! Dockerfile text to instructions, as BuildKit's parser reads it: parser
//! directives at the top (`# escape=`, `# syntax=`, `# check=`), comment
//! lines (also inside a continued instruction), line continuation with
//! the escape character, case-insensitive instruction names, builder
//! flags (`--name=value` before the arguments) and here-documents on
//! RUN, COPY and ADD (several per line, `<<-` strips leading tabs, a
//! quoted delimiter turns expansion off).
//!
//! Each instruction keeps the line it starts on; every error names it.
//! Arguments stay unexpanded here (see `expand.rs`).

use super::error::BuildError;

/// The instructions of the Dockerfile language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
}

impl Keyword {
    pub fn parse(word: &str) -> Option<Keyword> {
        Some(match word.to_ascii_uppercase().as_str() {
            "ADD" => Keyword::Add,
            "ARG" => Keyword::Arg,
            "CMD" => Keyword::Cmd,
            "COPY" => Keyword::Copy,
            "ENTRYPOINT" => Keyword::Entrypoint,
            "ENV" => Keyword::Env,
            "EXPOSE" => Keyword::Expose,
            "FROM" => Keyword::From,
            "HEALTHCHECK" => Keyword::Healthcheck,
            "LABEL" => Keyword::Label,
            "MAINTAINER" => Keyword::Maintainer,
            "ONBUILD" => Keyword::Onbuild,
            "RUN" => Keyword::Run,
            "SHELL" => Keyword::Shell,
            "STOPSIGNAL" => Keyword::Stopsignal,
            "USER" => Keyword::User,
            "VOLUME" => Keyword::Volume,
            "WORKDIR" => Keyword::Workdir,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Keyword::Add => "ADD",
            Keyword::Arg => "ARG",
            Keyword::Cmd => "CMD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Env => "ENV",
            Keyword::Expose => "EXPOSE",
            Keyword::From => "FROM",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Run => "RUN",
            Keyword::Shell => "SHELL",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::User => "USER",
            Keyword::Volume => "VOLUME",
            Keyword::Workdir => "WORKDIR",
        }
    }

    /// Whether the instruction may carry here-documents.
    fn takes_heredocs(self) -> bool {
        matches!(self, Keyword::Run | Keyword::Copy | Keyword::Add)
    }

    /// Whether builder flags (`--x=y`) are read before the arguments.
    fn takes_flags(self) -> bool {
        matches!(
            self,
            Keyword::Add | Keyword::Copy | Keyword::From | Keyword::Run | Keyword::Healthcheck
        )
    }
}

/// A here-document: `<<NAME` on the instruction's line, its lines after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted: no expansion.
    pub expand: bool,
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The line it starts on (1-based).
    pub line: usize,
    pub keyword: Keyword,
    /// `--name[=value]` flags, in order.
    pub flags: Vec<(String, Option<String>)>,
    /// The arguments after the flags, continuation lines joined.
    pub args: String,
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text after its keyword (flags included), for
    /// history and messages.
    pub text: String,
}

impl Instruction {
    /// The flag `name`'s value(s).
    pub fn flag_values(&self, name: &str) -> Vec<Option<&str>> {
        self.flags
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
            .collect()
    }

    /// The arguments as an exec-form JSON array of strings, if they are one.
    pub fn json_args(&self) -> Option<Vec<String>> {
        parse_json_array(&self.args)
    }
}

/// `["a", "b"]` as a list of strings.
pub fn parse_json_array(text: &str) -> Option<Vec<String>> {
    let t = text.trim();
    if !t.starts_with('[') || !t.ends_with(']') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub escape: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// A parsed Dockerfile: its directives and instructions, and warnings.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub directives: Directives,
    pub instructions: Vec<Instruction>,
    pub warnings: Vec<String>,
}

/// Parses `text`; `file` names it in errors (`Dockerfile:LINE: ...`).
pub fn parse_dockerfile(file: &str, text: &str) -> Result<Dockerfile, BuildError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let err = |line: usize, message: String| BuildError::Syntax {
        file: file.to_string(),
        line,
        message,
    };
    let mut directives = Directives::default();
    let mut warnings = Vec::new();
    let mut i = 0;
    // Directives: only before anything else (a blank line ends them too).
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else {
            break;
        };
        match name.as_str() {
            "escape" => {
                directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(
                            i + 1,
                            format!("invalid escape token '{other}' does not match ` or \\"),
                        ))
                    }
                }
            }
            "syntax" => directives.syntax = Some(value),
            "check" => directives.check = Some(value),
            _ => break,
        }
        i += 1;
    }
    let escape = directives.escape;
    let mut instructions = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut logical = String::new();
        let mut current = trimmed.to_string();
        let mut empty_continuation = false;
        loop {
            match strip_continuation(&current, escape) {
                Some(head) => {
                    logical.push_str(head);
                    i += 1;
                    // The next line that is neither blank nor a comment.
                    loop {
                        if i >= lines.len() {
                            break;
                        }
                        let t = lines[i].trim_start();
                        if t.is_empty() {
                            empty_continuation = true;
                            i += 1;
                        } else if t.starts_with('#') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                    current = lines[i].to_string();
                }
                None => {
                    logical.push_str(&current);
                    i += 1;
                    break;
                }
            }
        }
        if empty_continuation {
            warnings.push(format!(
                "{file}:{}: empty continuation line (an empty line inside a continued instruction is ignored)",
                start + 1
            ));
        }
        let logical = logical.trim_end().to_string();
        let (word, rest) = match logical.find(char::is_whitespace) {
            Some(p) => (&logical[..p], logical[p..].trim_start()),
            None => (logical.as_str(), ""),
        };
        let keyword = Keyword::parse(word).ok_or_else(|| {
            err(
                start + 1,
                format!("unknown instruction: {}", word.to_ascii_uppercase()),
            )
        })?;
        let (flags, args) = if keyword.takes_flags() {
            split_flags(rest, escape)
        } else {
            (Vec::new(), rest.to_string())
        };
        let mut heredocs = Vec::new();
        if keyword.takes_heredocs() && !args.trim_start().starts_with('[') {
            for (name, strip_tabs, expand) in heredoc_markers(&args) {
                let mut content = String::new();
                let mut found = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    let l = if strip_tabs {
                        raw.trim_start_matches('\t')
                    } else {
                        raw
                    };
                    if l == name {
                        found = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !found {
                    return Err(err(
                        start + 1,
                        format!("unterminated heredoc: no line {name:?} ends the here-document <<{name}"),
                    ));
                }
                heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                });
            }
        }
        if args.trim().is_empty() && heredocs.is_empty() {
            return Err(err(
                start + 1,
                format!("{} requires at least one argument", keyword.name()),
            ));
        }
        instructions.push(Instruction {
            line: start + 1,
            keyword,
            flags,
            args: args.trim().to_string(),
            heredocs,
            text: rest.to_string(),
        });
    }
    if instructions.is_empty() {
        return Err(BuildError::Syntax {
            file: file.to_string(),
            line: 1,
            message: "the Dockerfile has no instructions (it is empty)".into(),
        });
    }
    Ok(Dockerfile {
        directives,
        instructions,
        warnings,
    })
}

/// A `# name=value` parser directive.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.trim().to_string()))
}

/// The line without its trailing escape character (and whitespace after
/// it), if it continues on the next line.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end_matches([' ', '\t']);
    t.strip_suffix(escape)
}

/// Splits `--name[=value]` flags off the front of `rest`.
fn split_flags(rest: &str, escape: char) -> (Vec<(String, Option<String>)>, String) {
    let mut flags = Vec::new();
    let mut s = rest.trim_start();
    loop {
        if !s.starts_with("--") {
            break;
        }
        let end = word_end(s, escape);
        let word = &s[2..end];
        if word.is_empty() {
            // A bare `--` ends the flags.
            s = s[end..].trim_start();
            break;
        }
        let unquote = |v: &str| {
            let v = v.trim();
            if v.len() >= 2
                && ((v.starts_with('"') && v.ends_with('"'))
                    || (v.starts_with('\'') && v.ends_with('\'')))
            {
                v[1..v.len() - 1].to_string()
            } else {
                v.to_string()
            }
        };
        match word.split_once('=') {
            Some((n, v)) => flags.push((n.to_string(), Some(unquote(v)))),
            None => flags.push((word.to_string(), None)),
        }
        s = s[end..].trim_start();
    }
    (flags, s.to_string())
}

/// The end of the first whitespace-separated word of `s` (quotes respected).
fn word_end(s: &str, escape: char) -> usize {
    let mut quote: Option<char> = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == escape => {
                chars.next();
            }
            None if c.is_whitespace() => return i,
            None => {}
        }
    }
    s.len()
}

/// The here-document markers on an instruction's line: (name, `<<-`,
/// expand), in order.
fn heredoc_markers(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let bytes = args.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i + 1 < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                i += 1;
                continue;
            }
            None if c == b'"' || c == b'\'' => {
                quote = Some(c);
                i += 1;
                continue;
            }
            None => {}
        }
        if c == b'<' && bytes[i + 1] == b'<' && (i + 2 >= bytes.len() || bytes[i + 2] != b'<') {
            let mut j = i + 2;
            let strip_tabs = j < bytes.len() && bytes[j] == b'-';
            if strip_tabs {
                j += 1;
            }
            let (name, expand, end) = match bytes.get(j) {
                Some(&q @ (b'"' | b'\'')) => {
                    let close = args[j + 1..].find(q as char).map(|p| p + j + 1);
                    match close {
                        Some(k) => (args[j + 1..k].to_string(), false, k + 1),
                        None => (String::new(), false, bytes.len()),
                    }
                }
                _ => {
                    let k = args[j..]
                        .find(|ch: char| {
                            !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.')
                        })
                        .map_or(bytes.len(), |p| p + j);
                    (args[j..k].to_string(), true, k)
                }
            };
            if !name.is_empty() {
                out.push((name, strip_tabs, expand));
            }
            i = end.max(i + 2);
            continue;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Dockerfile {
        parse_dockerfile("Dockerfile", text).unwrap()
    }

    #[test]
    fn continuation_comments_and_case() {
        let d = parse("# syntax=docker/dockerfile:1\nfrom busybox\n\n# c\nRUN echo a \\\n# inside\n  b\nrun [\"x\"]\n");
        assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.instructions.len(), 3);
        assert_eq!(d.instructions[0].keyword, Keyword::From);
        assert_eq!(d.instructions[1].line, 5);
        assert_eq!(d.instructions[1].args, "echo a   b");
        assert_eq!(d.instructions[2].json_args(), Some(vec!["x".to_string()]));
    }

    #[test]
    fn escape_directive() {
        let d = parse("# escape=`\nFROM x\nRUN a `\n b\nCOPY c:\\x d\n");
        assert_eq!(d.directives.escape, '`');
        assert_eq!(d.instructions[1].args, "a  b");
        assert_eq!(d.instructions[2].args, "c:\\x d");
    }

    #[test]
    fn flags_and_heredocs() {
        let d = parse(
            "FROM x\nCOPY --from=a --chmod=755 <<EOF /dst\nhello\nEOF\nRUN <<-A cat <<'B'\n\tone\n\tA\n$two\nB\n",
        );
        let copy = &d.instructions[1];
        assert_eq!(
            copy.flags,
            vec![
                ("from".to_string(), Some("a".to_string())),
                ("chmod".to_string(), Some("755".to_string()))
            ]
        );
        assert_eq!(copy.heredocs[0].content, "hello\n");
        let run = &d.instructions[2];
        assert_eq!(run.line, 5);
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].content, "one\n");
        assert!(!run.heredocs[1].expand);
        assert_eq!(run.heredocs[1].content, "$two\n");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_dockerfile("Dockerfile", "FROM x\n\nFOO bar\n").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:3: unknown instruction: FOO");
        let e = parse_dockerfile("Dockerfile", "FROM x\nRUN <<EOF\nabc\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Dockerfile:2: unterminated heredoc"),
            "{e}"
        );
        let e = parse_dockerfile("Dockerfile", "\n# only a comment\n").unwrap_err();
        assert!(e.to_string().starts_with("Dockerfile:1:"), "{e}");
        let e = parse_dockerfile("Dockerfile", "FROM x\nRUN\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: RUN requires at least one argument"
        );
    }
}
