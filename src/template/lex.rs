//! The lexer: splits a template into text and the tokens of its actions,
//! as Go's text/template/parse lexer does. `{{- ` and ` -}}` trim the
//! white space of the text beside them here, so the parser never sees it;
//! comments (`{{/* ... */}}`) produce no token.

use super::TemplateError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// Text outside actions.
    Text(String),
    /// `{{` (the trim marker is already applied).
    Open,
    /// `}}`
    Close,
    /// `.A.B` (names without dots); `attached` when no space precedes it,
    /// so `(...).A` chains.
    Field {
        names: Vec<String>,
        attached: bool,
    },
    /// `.` alone.
    Dot,
    /// `$x.A.B` (`$` alone is the root variable).
    Variable {
        name: String,
        fields: Vec<String>,
    },
    /// A function name or a keyword.
    Identifier(String),
    /// A string constant, unquoted.
    Str(String),
    /// A character constant: its code point.
    Char(char),
    /// A number as written.
    Number(String),
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    Comma,
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub struct Item {
    pub token: Token,
    pub pos: usize,
}

pub fn lex(source: &str) -> Result<Vec<Item>, TemplateError> {
    let mut lexer = Lexer {
        src: source,
        pos: 0,
        items: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.items)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    items: Vec<Item>,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

impl Lexer<'_> {
    fn error(&self, at: usize, message: impl std::fmt::Display) -> TemplateError {
        TemplateError::parse(self.src, at, message)
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn push(&mut self, token: Token, pos: usize) {
        self.items.push(Item { token, pos });
    }

    fn run(&mut self) -> Result<(), TemplateError> {
        let mut trim_next_text = false;
        loop {
            let start = self.pos;
            let open = self.rest().find("{{").map(|i| start + i);
            let text_end = open.unwrap_or(self.src.len());
            let mut text = &self.src[start..text_end];
            if trim_next_text {
                text = text.trim_start_matches(is_space);
            }
            let mut trim_left = false;
            if let Some(o) = open {
                let after = &self.src[o + 2..];
                if after.starts_with('-') && after[1..].starts_with(is_space) {
                    trim_left = true;
                }
            }
            if trim_left {
                text = text.trim_end_matches(is_space);
            }
            if !text.is_empty() {
                self.push(Token::Text(text.to_string()), start);
            }
            let Some(o) = open else {
                return Ok(());
            };
            self.pos = o + 2 + if trim_left { 2 } else { 0 };
            trim_next_text = self.action(o)?;
        }
    }

    /// Lexes one action from after its `{{`; returns whether it ended with
    /// ` -}}`.
    fn action(&mut self, open_at: usize) -> Result<bool, TemplateError> {
        // A comment: `{{/*` ... `*/}}`, nothing else inside.
        if self.rest().starts_with("/*") {
            let Some(end) = self.rest().find("*/") else {
                return Err(self.error(open_at, "unclosed comment"));
            };
            self.pos += end + 2;
            return self.close_after_comment(open_at);
        }
        self.push(Token::Open, open_at);
        let mut attached = false;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error(open_at, "unclosed action"));
            };
            let at = self.pos;
            if is_space(c) {
                let spaces = self.rest().len() - self.rest().trim_start_matches(is_space).len();
                if self.rest()[spaces..].starts_with("-}}") {
                    self.pos += spaces + 3;
                    self.push(Token::Close, at);
                    return Ok(true);
                }
                self.pos += spaces;
                attached = false;
                continue;
            }
            if self.rest().starts_with("}}") {
                self.pos += 2;
                self.push(Token::Close, at);
                return Ok(false);
            }
            let was_attached = attached;
            attached = true;
            match c {
                '|' => self.single(Token::Pipe),
                '(' => self.single(Token::LeftParen),
                ')' => self.single(Token::RightParen),
                ',' => self.single(Token::Comma),
                '=' => self.single(Token::Assign),
                ':' => {
                    if self.rest().starts_with(":=") {
                        self.pos += 2;
                        self.push(Token::Declare, at);
                    } else {
                        return Err(self.error(at, "expected :="));
                    }
                }
                '"' => self.quoted(at)?,
                '`' => self.raw_quoted(at)?,
                '\'' => self.char_constant(at)?,
                '$' => {
                    self.pos += 1;
                    let name = self.word();
                    let fields = self.fields()?;
                    self.push(
                        Token::Variable {
                            name: format!("${name}"),
                            fields,
                        },
                        at,
                    );
                }
                '.' => {
                    let next = self.rest()[1..].chars().next();
                    if next.is_some_and(|n| n.is_ascii_digit()) {
                        self.number(at)?;
                    } else {
                        let fields = self.fields()?;
                        if fields.is_empty() {
                            self.pos += 1;
                            self.push(Token::Dot, at);
                        } else {
                            self.push(
                                Token::Field {
                                    names: fields,
                                    attached: was_attached,
                                },
                                at,
                            );
                        }
                    }
                }
                '+' | '-' | '0'..='9' => self.number(at)?,
                c if is_alnum(c) => {
                    let word = self.word();
                    self.push(Token::Identifier(word), at);
                }
                other => {
                    return Err(self.error(at, format!("unexpected {other:?} in command")));
                }
            }
        }
    }

    fn close_after_comment(&mut self, open_at: usize) -> Result<bool, TemplateError> {
        let rest = self.rest();
        if rest.starts_with("}}") {
            self.pos += 2;
            return Ok(false);
        }
        if rest.starts_with(" -}}") {
            self.pos += 4;
            return Ok(true);
        }
        Err(self.error(open_at, "comment ends before closing delimiter"))
    }

    fn single(&mut self, token: Token) {
        let at = self.pos;
        self.pos += 1;
        self.push(token, at);
    }

    fn word(&mut self) -> String {
        let len = self
            .rest()
            .find(|c: char| !is_alnum(c))
            .unwrap_or(self.rest().len());
        let word = self.rest()[..len].to_string();
        self.pos += len;
        word
    }

    /// `.A.B.C` at the current position (possibly none).
    fn fields(&mut self) -> Result<Vec<String>, TemplateError> {
        let mut names = Vec::new();
        while self.rest().starts_with('.') {
            let next = self.rest()[1..].chars().next();
            if !next.is_some_and(is_alnum) {
                if names.is_empty() {
                    break;
                }
                return Err(self.error(self.pos, "bad character in field name"));
            }
            self.pos += 1;
            names.push(self.word());
        }
        Ok(names)
    }

    fn quoted(&mut self, at: usize) -> Result<(), TemplateError> {
        let mut out = String::new();
        let mut chars = self.rest()[1..].char_indices();
        loop {
            let Some((i, c)) = chars.next() else {
                return Err(self.error(at, "unterminated quoted string"));
            };
            match c {
                '"' => {
                    self.pos += 1 + i + 1;
                    break;
                }
                '\n' => return Err(self.error(at, "unterminated quoted string")),
                '\\' => {
                    let Some((_, e)) = chars.next() else {
                        return Err(self.error(at, "unterminated quoted string"));
                    };
                    out.push(
                        unescape(e, &mut chars)
                            .ok_or_else(|| self.error(at, "invalid syntax in quoted string"))?,
                    );
                }
                c => out.push(c),
            }
        }
        self.push(Token::Str(out), at);
        Ok(())
    }

    fn raw_quoted(&mut self, at: usize) -> Result<(), TemplateError> {
        let body = &self.rest()[1..];
        let Some(end) = body.find('`') else {
            return Err(self.error(at, "unterminated raw quoted string"));
        };
        let s = body[..end].replace('\r', "");
        self.pos += end + 2;
        self.push(Token::Str(s), at);
        Ok(())
    }

    fn char_constant(&mut self, at: usize) -> Result<(), TemplateError> {
        let mut chars = self.rest()[1..].char_indices();
        let c = match chars.next() {
            Some((_, '\\')) => match chars.next() {
                Some((_, e)) => unescape(e, &mut chars),
                None => None,
            },
            Some((_, '\'')) | Some((_, '\n')) | None => None,
            Some((_, c)) => Some(c),
        };
        match (c, chars.next()) {
            (Some(c), Some((i, '\''))) => {
                self.pos += 1 + i + 1;
                self.push(Token::Char(c), at);
                Ok(())
            }
            _ => Err(self.error(at, "malformed character constant")),
        }
    }

    fn number(&mut self, at: usize) -> Result<(), TemplateError> {
        let rest = self.rest();
        let mut len = 0;
        let bytes = rest.as_bytes();
        if len < bytes.len() && (bytes[len] == b'+' || bytes[len] == b'-') {
            len += 1;
        }
        let mut digits = "0123456789_";
        if rest[len..].starts_with("0x") || rest[len..].starts_with("0X") {
            len += 2;
            digits = "0123456789abcdefABCDEF_";
        } else if rest[len..].starts_with("0o") || rest[len..].starts_with("0O") {
            len += 2;
            digits = "01234567_";
        } else if rest[len..].starts_with("0b") || rest[len..].starts_with("0B") {
            len += 2;
            digits = "01_";
        }
        let take = |len: &mut usize, set: &str| {
            while *len < bytes.len() && set.contains(bytes[*len] as char) {
                *len += 1;
            }
        };
        take(&mut len, digits);
        if len < bytes.len() && bytes[len] == b'.' {
            len += 1;
            take(&mut len, digits);
        }
        if digits.len() == 11 && len < bytes.len() && (bytes[len] == b'e' || bytes[len] == b'E') {
            len += 1;
            if len < bytes.len() && (bytes[len] == b'+' || bytes[len] == b'-') {
                len += 1;
            }
            take(&mut len, "0123456789_");
        }
        if len < bytes.len() && is_alnum(rest[len..].chars().next().unwrap_or(' ')) {
            let end = rest[len..]
                .find(|c: char| !is_alnum(c))
                .map_or(rest.len(), |e| len + e);
            return Err(self.error(at, format!("bad number syntax: {:?}", &rest[..end])));
        }
        if len == 0 || rest[..len].chars().all(|c| c == '+' || c == '-') {
            return Err(self.error(at, format!("bad number syntax: {:?}", &rest[..len.max(1)])));
        }
        let text = rest[..len].to_string();
        self.pos += len;
        self.push(Token::Number(text), at);
        Ok(())
    }
}

/// The character after a backslash in a Go string or character constant.
fn unescape(e: char, chars: &mut std::str::CharIndices) -> Option<char> {
    let mut hex = |n: usize| -> Option<char> {
        let mut v = 0u32;
        for _ in 0..n {
            v = v * 16 + chars.next()?.1.to_digit(16)?;
        }
        char::from_u32(v)
    };
    Some(match e {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'v' => '\u{b}',
        '\\' => '\\',
        '"' => '"',
        '\'' => '\'',
        'x' => return hex(2),
        'u' => return hex(4),
        'U' => return hex(8),
        '0'..='7' => {
            let mut v = e.to_digit(8)?;
            for _ in 0..2 {
                v = v * 8 + chars.next()?.1.to_digit(8)?;
            }
            return char::from_u32(v);
        }
        _ => return None,
    })
}
