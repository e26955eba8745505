//! The parser: builds the parse tree of Go's text/template from the
//! lexer's tokens, with Go's checks at parse time (functions that do not
//! exist, variables never declared, `{{end}}` and `{{else}}` out of place).

use super::funcs;
use super::lex::{Item, Token};
use super::TemplateError;

#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    Action(Pipeline),
    If(Branch),
    Range(Branch),
    With(Branch),
    Break,
    Continue,
}

/// `{{if|range|with PIPELINE}} list {{else}} else_list {{end}}`.
#[derive(Debug, Clone)]
pub struct Branch {
    pub pipe: Pipeline,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub pos: usize,
    /// Variables declared (`:=`) or assigned (`=`) by this pipeline.
    pub vars: Vec<String>,
    pub assign: bool,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone)]
pub struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub enum Arg {
    Dot,
    Nil,
    Bool(bool),
    Number(Number),
    Str(String),
    Field(Vec<String>),
    Variable(String, Vec<String>),
    Function(String),
    Pipe(Box<Pipeline>),
    Chain(Box<Arg>, Vec<String>),
}

/// A number constant, typed as Go types an untyped constant passed to an
/// `interface{}`: a float if written with a point or exponent, else an
/// integer (a character constant is its code point).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Uint(u64),
    Float(f64),
}

pub fn parse(source: &str, items: Vec<Item>) -> Result<Vec<Node>, TemplateError> {
    let mut parser = Parser {
        source,
        items,
        next: 0,
        vars: vec!["$".to_string()],
        loops: 0,
    };
    let (list, end) = parser.list()?;
    if let Some((word, at)) = end {
        return Err(parser.error(at, format!("unexpected {{{{{word}}}}}")));
    }
    Ok(list)
}

struct Parser<'a> {
    source: &'a str,
    items: Vec<Item>,
    next: usize,
    /// Variables in scope.
    vars: Vec<String>,
    /// How many `range` bodies enclose the current position.
    loops: usize,
}

impl Parser<'_> {
    fn error(&self, at: usize, message: impl std::fmt::Display) -> TemplateError {
        TemplateError::parse(self.source, at, message)
    }

    fn peek(&self) -> Option<&Token> {
        self.items.get(self.next).map(|i| &i.token)
    }

    fn pos(&self) -> usize {
        self.items
            .get(self.next)
            .map_or(self.source.len(), |i| i.pos)
    }

    fn advance(&mut self) -> Option<Item> {
        let item = self.items.get(self.next).cloned();
        self.next += 1;
        item
    }

    fn expect_close(&mut self, context: &str) -> Result<(), TemplateError> {
        match self.advance() {
            Some(Item {
                token: Token::Close,
                ..
            }) => Ok(()),
            Some(item) => Err(self.error(
                item.pos,
                format!("unexpected {} in {context}", describe(&item.token)),
            )),
            None => Err(self.error(self.source.len(), "unexpected EOF")),
        }
    }

    /// Nodes up to `{{end}}`, `{{else ...}}` or the end of input. Returns
    /// the list and the keyword that ended it (its `{{` consumed, the
    /// keyword itself consumed too).
    #[allow(clippy::type_complexity)]
    fn list(&mut self) -> Result<(Vec<Node>, Option<(String, usize)>), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(item) = self.advance() {
            match item.token {
                Token::Text(t) => nodes.push(Node::Text(t)),
                Token::Open => {
                    if let Some(Token::Identifier(word)) = self.peek().cloned() {
                        let at = self.pos();
                        match word.as_str() {
                            "end" | "else" => {
                                self.next += 1;
                                return Ok((nodes, Some((word, at))));
                            }
                            "if" | "range" | "with" => {
                                self.next += 1;
                                nodes.push(self.control(&word, at)?);
                                continue;
                            }
                            "break" | "continue" => {
                                self.next += 1;
                                if self.loops == 0 {
                                    return Err(self.error(
                                        at,
                                        format!("{{{{{word}}}}} outside {{{{range}}}}"),
                                    ));
                                }
                                self.expect_close(&word)?;
                                nodes.push(if word == "break" {
                                    Node::Break
                                } else {
                                    Node::Continue
                                });
                                continue;
                            }
                            "define" | "template" | "block" => {
                                return Err(self.error(
                                    at,
                                    format!("{{{{{word}}}}} is not supported in --format"),
                                ));
                            }
                            _ => {}
                        }
                    }
                    let pipe = self.pipeline("command", false)?;
                    nodes.push(Node::Action(pipe));
                }
                other => {
                    return Err(self.error(item.pos, format!("unexpected {}", describe(&other))))
                }
            }
        }
        Ok((nodes, None))
    }

    fn control(&mut self, keyword: &str, at: usize) -> Result<Node, TemplateError> {
        let scope = self.vars.len();
        let pipe = self.pipeline(keyword, keyword == "range")?;
        if keyword == "range" {
            self.loops += 1;
        }
        let body = self.list();
        if keyword == "range" {
            self.loops -= 1;
        }
        let (list, end) = body?;
        let mut else_list = None;
        match end {
            None => return Err(self.error(self.source.len(), "unexpected EOF")),
            Some((word, _)) if word == "end" => self.expect_close("end")?,
            Some((_, else_at)) => {
                // `{{else if ...}}` (in an if) is an if inside the else,
                // sharing its {{end}}.
                if keyword == "if" && matches!(self.peek(), Some(Token::Identifier(w)) if w == "if")
                {
                    let if_at = self.pos();
                    self.next += 1;
                    else_list = Some(vec![self.control("if", if_at)?]);
                } else {
                    self.expect_close("else")?;
                    let (list, end) = self.list()?;
                    match end {
                        Some((word, _)) if word == "end" => self.expect_close("end")?,
                        Some((_, at)) => return Err(self.error(at, "expected end; found {{else}}")),
                        None => return Err(self.error(self.source.len(), "unexpected EOF")),
                    }
                    else_list = Some(list);
                }
                let _ = else_at;
            }
        }
        self.vars.truncate(scope);
        let branch = Branch {
            pipe,
            list,
            else_list,
        };
        let _ = at;
        Ok(match keyword {
            "if" => Node::If(branch),
            "range" => Node::Range(branch),
            _ => Node::With(branch),
        })
    }

    /// A pipeline up to `}}` (or `)` when `nested`), with its variable
    /// declaration.
    fn pipeline(&mut self, context: &str, range: bool) -> Result<Pipeline, TemplateError> {
        self.pipeline_until(context, range, false)
    }

    fn pipeline_until(
        &mut self,
        context: &str,
        range: bool,
        nested: bool,
    ) -> Result<Pipeline, TemplateError> {
        let pos = self.pos();
        let mut vars = Vec::new();
        let mut assign = false;
        // `$x :=`, `$x =`, and in a range `$i, $e :=`.
        if let Some(Token::Variable { name, fields }) = self.peek().cloned() {
            if fields.is_empty() {
                let after = self.items.get(self.next + 1).map(|i| i.token.clone());
                match after {
                    Some(Token::Declare) | Some(Token::Assign) => {
                        self.next += 2;
                        assign = after == Some(Token::Assign);
                        vars.push(name);
                    }
                    Some(Token::Comma) if range => {
                        let third = self.items.get(self.next + 2).map(|i| i.token.clone());
                        let fourth = self.items.get(self.next + 3).map(|i| i.token.clone());
                        match (third, fourth) {
                            (
                                Some(Token::Variable {
                                    name: second,
                                    fields,
                                }),
                                Some(op @ (Token::Declare | Token::Assign)),
                            ) if fields.is_empty() => {
                                self.next += 4;
                                assign = op == Token::Assign;
                                vars.push(name);
                                vars.push(second);
                            }
                            _ => return Err(self.error(pos, "range can only initialize variables")),
                        }
                    }
                    Some(Token::Comma) => {
                        return Err(self.error(pos, format!("too many declarations in {context}")))
                    }
                    _ => {}
                }
            }
        }
        if assign {
            for v in &vars {
                if !self.vars.contains(v) {
                    return Err(self.error(pos, format!("undefined variable {v:?}")));
                }
            }
        }
        let mut commands = Vec::new();
        loop {
            match self.peek() {
                Some(Token::Close) if !nested => {
                    self.next += 1;
                    break;
                }
                Some(Token::RightParen) if nested => {
                    self.next += 1;
                    break;
                }
                Some(Token::Close) | Some(Token::RightParen) | None => {
                    let at = self.pos();
                    return Err(match self.peek() {
                        None => self.error(at, "unclosed action"),
                        Some(Token::RightParen) => self.error(at, "unexpected right paren"),
                        _ => self.error(at, "unclosed left paren"),
                    });
                }
                _ => {}
            }
            let command = self.command()?;
            commands.push(command);
            match self.peek() {
                // Go (1.19, Docker 20.10's) accepts a trailing `|`.
                Some(Token::Pipe) => self.next += 1,
                Some(Token::Close) | Some(Token::RightParen) | None => {}
                Some(other) => {
                    let other = describe(other);
                    return Err(self.error(self.pos(), format!("unexpected {other} in operand")));
                }
            }
        }
        if commands.is_empty() {
            return Err(self.error(pos, format!("missing value for {context}")));
        }
        // Declared variables come into scope after the pipeline.
        if !assign {
            self.vars.extend(vars.iter().cloned());
        }
        Ok(Pipeline {
            pos,
            vars,
            assign,
            commands,
        })
    }

    fn command(&mut self) -> Result<Command, TemplateError> {
        let pos = self.pos();
        let mut args = Vec::new();
        while let Some(token) = self.peek().cloned() {
            match token {
                Token::Close | Token::RightParen | Token::Pipe => break,
                _ => args.push(self.operand()?),
            }
        }
        if args.is_empty() {
            return Err(self.error(pos, "empty command"));
        }
        Ok(Command { pos, args })
    }

    fn operand(&mut self) -> Result<Arg, TemplateError> {
        let Some(item) = self.advance() else {
            return Err(self.error(self.source.len(), "unexpected EOF"));
        };
        let at = item.pos;
        let mut arg = match item.token {
            Token::Dot => Arg::Dot,
            Token::Field { names, .. } => Arg::Field(names),
            Token::Variable { name, fields } => {
                if !self.vars.contains(&name) {
                    return Err(self.error(at, format!("undefined variable {name:?}")));
                }
                Arg::Variable(name, fields)
            }
            Token::Str(s) => Arg::Str(s),
            Token::Char(c) => Arg::Number(Number::Int(c as i64)),
            Token::Number(text) => Arg::Number(
                parse_number(&text)
                    .ok_or_else(|| self.error(at, format!("illegal number syntax: {text:?}")))?,
            ),
            Token::Identifier(word) => match word.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ if funcs::exists(&word) => Arg::Function(word),
                "if" | "range" | "with" | "end" | "else" | "break" | "continue" | "define"
                | "template" | "block" => {
                    return Err(self.error(at, format!("unexpected <{word}> in command")))
                }
                _ => return Err(self.error(at, format!("function {word:?} not defined"))),
            },
            Token::LeftParen => Arg::Pipe(Box::new(self.pipeline_until(
                "parenthesized pipeline",
                false,
                true,
            )?)),
            other => {
                return Err(self.error(at, format!("unexpected {} in operand", describe(&other))))
            }
        };
        // `(pipeline).Field`, `$x.A` written as a chain.
        if let Some(Token::Field {
            names,
            attached: true,
        }) = self.peek().cloned()
        {
            self.next += 1;
            if matches!(
                arg,
                Arg::Bool(_) | Arg::Str(_) | Arg::Number(_) | Arg::Nil | Arg::Dot
            ) {
                return Err(self.error(at, "unexpected . after term"));
            }
            arg = Arg::Chain(Box::new(arg), names);
        }
        Ok(arg)
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Text(_) => "text".into(),
        Token::Open => "\"{{\"".into(),
        Token::Close => "\"}}\"".into(),
        Token::Field { names, .. } => format!("<.{}>", names.join(".")),
        Token::Dot => "<.>".into(),
        Token::Variable { name, .. } => format!("<{name}>"),
        Token::Identifier(w) => format!("<{w}>"),
        Token::Str(s) => format!("{s:?}"),
        Token::Char(c) => format!("{c:?}"),
        Token::Number(n) => n.clone(),
        Token::Pipe => "\"|\"".into(),
        Token::LeftParen => "\"(\"".into(),
        Token::RightParen => "\")\"".into(),
        Token::Declare => "\":=\"".into(),
        Token::Assign => "\"=\"".into(),
        Token::Comma => "\",\"".into(),
    }
}

/// Reads a Go number constant.
fn parse_number(text: &str) -> Option<Number> {
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let lower = body.to_ascii_lowercase();
    let radix = if lower.starts_with("0x") {
        Some((16, &body[2..]))
    } else if lower.starts_with("0o") {
        Some((8, &body[2..]))
    } else if lower.starts_with("0b") {
        Some((2, &body[2..]))
    } else if body.len() > 1 && body.starts_with('0') && body.chars().all(|c| c.is_ascii_digit()) {
        Some((8, &body[1..]))
    } else {
        None
    };
    if let Some((radix, digits)) = radix {
        let v = u64::from_str_radix(digits, radix).ok()?;
        return Some(signed(negative, v));
    }
    if body.contains(['.', 'e', 'E']) {
        let v: f64 = body.parse().ok()?;
        return Some(Number::Float(if negative { -v } else { v }));
    }
    let v: u64 = body.parse().ok()?;
    Some(signed(negative, v))
}

fn signed(negative: bool, v: u64) -> Number {
    if negative {
        Number::Int((v as i64).wrapping_neg())
    } else if v > i64::MAX as u64 {
        Number::Uint(v)
    } else {
        Number::Int(v as i64)
    }
}

/// The first name of every `.Field` the template reads from dot (a table
/// header is made of these).
pub fn fields(nodes: &[Node], out: &mut Vec<String>) {
    fn pipe(p: &Pipeline, out: &mut Vec<String>) {
        for c in &p.commands {
            for a in &c.args {
                arg(a, out);
            }
        }
    }
    fn arg(a: &Arg, out: &mut Vec<String>) {
        match a {
            Arg::Field(names) => {
                if let Some(first) = names.first() {
                    if !out.contains(first) {
                        out.push(first.clone());
                    }
                }
            }
            Arg::Pipe(p) => pipe(p, out),
            Arg::Chain(inner, _) => arg(inner, out),
            _ => {}
        }
    }
    for node in nodes {
        match node {
            Node::Action(p) => pipe(p, out),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                pipe(&b.pipe, out);
                fields(&b.list, out);
                if let Some(e) = &b.else_list {
                    fields(e, out);
                }
            }
            _ => {}
        }
    }
}
