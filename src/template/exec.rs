//! The evaluator: walks the parse tree over a `serde_json::Value` with Go's
//! rules (truth, scoping of variables, `range` over sorted map keys,
//! missing keys as `<no value>`, pipelines passing their value as the last
//! argument, `and`/`or` evaluating only what they need).

use serde_json::Value;

use super::funcs;
use super::parse::{Arg, Branch, Command, Node, Number, Pipeline};
use super::print::print_value;
use super::TemplateError;

/// A value during evaluation: JSON, or Go's "no value" (a map key that is
/// not there).
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Missing,
    Json(Value),
}

impl Val {
    pub fn json(&self) -> Option<&Value> {
        match self {
            Val::Missing => None,
            Val::Json(v) => Some(v),
        }
    }
}

/// Go's truth: false, 0, nil, and empty strings, arrays and maps are
/// false; everything else true.
pub fn truth(v: &Val) -> bool {
    match v {
        Val::Missing => false,
        Val::Json(v) => match v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(m) => !m.is_empty(),
        },
    }
}

enum Flow {
    Normal,
    Break,
    Continue,
}

pub struct State<'a> {
    source: &'a str,
    vars: Vec<(String, Val)>,
    header: bool,
    out: String,
}

/// An error raised while evaluating a node: where it happened is added
/// by [`State::fail`].
pub struct Failure(pub String);

impl<T: Into<String>> From<T> for Failure {
    fn from(s: T) -> Failure {
        Failure(s.into())
    }
}

pub fn execute(
    source: &str,
    nodes: &[Node],
    data: &Value,
    header: bool,
) -> Result<String, TemplateError> {
    let mut state = State {
        source,
        vars: vec![("$".into(), Val::Json(data.clone()))],
        header,
        out: String::new(),
    };
    let dot = Val::Json(data.clone());
    state.walk(nodes, &dot)?;
    Ok(state.out)
}

impl State<'_> {
    fn fail(&self, pos: usize, node: &dyn std::fmt::Display, f: Failure) -> TemplateError {
        TemplateError::exec(self.source, pos, &node.to_string(), &f.0)
    }

    fn walk(&mut self, nodes: &[Node], dot: &Val) -> Result<Flow, TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(pipe) => {
                    let v = self.pipeline(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        let text = match &v {
                            Val::Missing => "<no value>".to_string(),
                            Val::Json(j) => print_value(j),
                        };
                        self.out.push_str(&text);
                    }
                }
                Node::If(b) => {
                    let flow = self.branch(b, dot, false)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With(b) => {
                    let flow = self.branch(b, dot, true)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => self.range(b, dot)?,
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn branch(&mut self, b: &Branch, dot: &Val, with: bool) -> Result<Flow, TemplateError> {
        let mark = self.vars.len();
        let v = self.pipeline(&b.pipe, dot)?;
        let flow = if truth(&v) {
            let new_dot = if with { v } else { dot.clone() };
            self.walk(&b.list, &new_dot)?
        } else if let Some(list) = &b.else_list {
            self.walk(list, dot)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, b: &Branch, dot: &Val) -> Result<(), TemplateError> {
        let mark = self.vars.len();
        let v = self.pipeline(&b.pipe, dot)?;
        // The pipeline's own declaration is replaced by the loop's.
        self.vars.truncate(mark);
        let items: Vec<(Value, Value)> = match &v {
            Val::Missing | Val::Json(Value::Null) => Vec::new(),
            Val::Json(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, e)| (Value::from(i as i64), e.clone()))
                .collect(),
            Val::Json(Value::Object(m)) => {
                // serde_json's map is ordered by key, as Go ranges over maps.
                m.iter()
                    .map(|(k, e)| (Value::String(k.clone()), e.clone()))
                    .collect()
            }
            Val::Json(other) => {
                return Err(self.fail(
                    b.pipe.pos,
                    &b.pipe,
                    format!("range can't iterate over {}", print_value(other)).into(),
                ))
            }
        };
        if items.is_empty() {
            if let Some(list) = &b.else_list {
                self.walk(list, dot)?;
            }
            return Ok(());
        }
        for (key, elem) in items {
            let inner = self.vars.len();
            match b.pipe.vars.as_slice() {
                [e] => self.set_or_push(e, Val::Json(elem.clone()), b.pipe.assign),
                [k, e] => {
                    self.set_or_push(k, Val::Json(key), b.pipe.assign);
                    self.set_or_push(e, Val::Json(elem.clone()), b.pipe.assign);
                }
                _ => {}
            }
            let flow = self.walk(&b.list, &Val::Json(elem))?;
            self.vars.truncate(if b.pipe.assign { inner } else { mark });
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn set_or_push(&mut self, name: &str, v: Val, assign: bool) {
        if assign {
            self.set_var(name, v);
        } else {
            self.vars.push((name.to_string(), v));
        }
    }

    fn set_var(&mut self, name: &str, v: Val) {
        if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = v;
        }
    }

    fn var(&self, name: &str) -> Val {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(Val::Missing, |(_, v)| v.clone())
    }

    fn pipeline(&mut self, pipe: &Pipeline, dot: &Val) -> Result<Val, TemplateError> {
        let mut value: Option<Val> = None;
        for command in &pipe.commands {
            value = Some(self.command(command, dot, value)?);
        }
        let value = value.unwrap_or(Val::Missing);
        for name in &pipe.vars {
            if pipe.assign {
                self.set_var(name, value.clone());
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn command(
        &mut self,
        command: &Command,
        dot: &Val,
        last: Option<Val>,
    ) -> Result<Val, TemplateError> {
        let first = &command.args[0];
        let rest = &command.args[1..];
        if let Arg::Function(name) = first {
            return self.call(name, rest, dot, last, command);
        }
        if !rest.is_empty() || last.is_some() {
            let what = match first {
                Arg::Field(names) => format!(".{}", names.join(".")),
                other => other.to_string(),
            };
            return Err(self.fail(
                command.pos,
                command,
                format!("can't give argument to non-function {what}").into(),
            ));
        }
        self.operand(first, dot)
            .map_err(|f| self.fail(command.pos, command, f))
    }

    /// The value of one operand (a function as an operand is called with
    /// no arguments).
    fn operand(&mut self, arg: &Arg, dot: &Val) -> Result<Val, Failure> {
        Ok(match arg {
            Arg::Dot => dot.clone(),
            Arg::Nil => return Err("nil is not a command".into()),
            Arg::Bool(b) => Val::Json(Value::Bool(*b)),
            Arg::Number(n) => Val::Json(number_value(*n)),
            Arg::Str(s) => Val::Json(Value::String(s.clone())),
            Arg::Field(names) => fields(dot, names)?,
            Arg::Variable(name, names) => fields(&self.var(name), names)?,
            Arg::Function(name) => {
                let command = Command {
                    pos: 0,
                    args: vec![arg.clone()],
                };
                return self
                    .call(name, &[], dot, None, &command)
                    .map_err(|e| Failure(e.message().to_string()));
            }
            Arg::Pipe(pipe) => self
                .pipeline(pipe, dot)
                .map_err(|e| Failure(e.message().to_string()))?,
            Arg::Chain(inner, names) => {
                let base = self.operand(inner, dot)?;
                fields(&base, names)?
            }
        })
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Arg],
        dot: &Val,
        last: Option<Val>,
        command: &Command,
    ) -> Result<Val, TemplateError> {
        let count = args.len() + usize::from(last.is_some());
        // and/or evaluate their arguments one at a time, stopping early.
        if name == "and" || name == "or" {
            if count == 0 {
                return Err(self.fail(
                    command.pos,
                    command,
                    format!("wrong number of args for {name}: want at least 1 got 0").into(),
                ));
            }
            let mut v = Val::Missing;
            for arg in args {
                v = self
                    .operand(arg, dot)
                    .map_err(|f| self.fail(command.pos, command, f))?;
                if truth(&v) == (name == "or") {
                    return Ok(v);
                }
            }
            if let Some(l) = last {
                v = l;
            }
            return Ok(v);
        }
        let mut values = Vec::with_capacity(count);
        for arg in args {
            let v = match arg {
                Arg::Nil => Val::Json(Value::Null),
                other => self
                    .operand(other, dot)
                    .map_err(|f| self.fail(command.pos, command, f))?,
            };
            values.push(v);
        }
        if let Some(l) = last {
            values.push(l);
        }
        funcs::call(name, &values, self.header).map_err(|message| {
            self.fail(
                command.pos,
                command,
                Failure(format!("error calling {name}: {message}")),
            )
        })
    }
}

fn number_value(n: Number) -> Value {
    match n {
        Number::Int(i) => Value::from(i),
        Number::Uint(u) => Value::from(u),
        Number::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
    }
}

/// `.A.B` from a value: a missing key gives "no value", and so does any
/// field of it; a field of nil or of a scalar is an error, as in Go.
fn fields(base: &Val, names: &[String]) -> Result<Val, Failure> {
    let mut current = base.clone();
    for name in names {
        current = match current {
            Val::Missing => Val::Missing,
            Val::Json(Value::Object(mut m)) => m.remove(name).map_or(Val::Missing, Val::Json),
            Val::Json(Value::Null) => {
                return Err(format!("nil pointer evaluating interface {{}}.{name}").into())
            }
            Val::Json(other) => {
                return Err(format!(
                    "can't evaluate field {name} in type {}",
                    funcs::type_name(&other)
                )
                .into())
            }
        };
    }
    Ok(current)
}

impl std::fmt::Display for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.vars.is_empty() {
            write!(
                f,
                "{} {} ",
                self.vars.join(", "),
                if self.assign { "=" } else { ":=" }
            )?;
        }
        let commands: Vec<String> = self.commands.iter().map(|c| c.to_string()).collect();
        f.write_str(&commands.join(" | "))
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let args: Vec<String> = self.args.iter().map(|a| a.to_string()).collect();
        f.write_str(&args.join(" "))
    }
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Dot => f.write_str("."),
            Arg::Nil => f.write_str("nil"),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Number(Number::Int(i)) => write!(f, "{i}"),
            Arg::Number(Number::Uint(u)) => write!(f, "{u}"),
            Arg::Number(Number::Float(x)) => write!(f, "{x}"),
            Arg::Str(s) => write!(f, "{s:?}"),
            Arg::Field(names) => write!(f, ".{}", names.join(".")),
            Arg::Variable(name, names) => {
                f.write_str(name)?;
                for n in names {
                    write!(f, ".{n}")?;
                }
                Ok(())
            }
            Arg::Function(name) => f.write_str(name),
            Arg::Pipe(p) => write!(f, "({p})"),
            Arg::Chain(inner, names) => write!(f, "{inner}.{}", names.join(".")),
        }
    }
}
