//! Go's text/template, as Docker's `--format` uses it, over
//! `serde_json::Value`s: text and actions, `if`/`else if`/`else`, `range`
//! (with `break`/`continue`), `with`, variables (`$x :=`, `$x =`),
//! pipelines, parenthesised pipelines, comments, `{{-`/`-}}` trimming,
//! Go's builtin functions and the ones Docker's client adds (`json`,
//! `split`, `join`, `title`, `lower`, `upper`, `pad`, `truncate`).
//!
//! Values are typed as Docker's structs are: whole numbers are ints,
//! other numbers float64, and a JSON object is a map whose keys `range`
//! visits in sorted order, as Go does. A missing key is Go's "no value"
//! (printed `<no value>`). `define`, `template` and `block` are refused:
//! a `--format` has one template.
//!
//! Why our own and not the `gtmpl` crate: gtmpl 0.7 ranges over maps in
//! hash order (Go sorts the keys), prints maps as Rust's Debug does, and
//! lacks `slice`, `break` and `continue`; Docker users' one-liners over
//! `.Config.Labels` or `.NetworkSettings` depend on the first two.
//! This module is tested against Go's own text/template
//! (tests/it/templates.rs runs the Go program in tests/it/template_oracle/).

mod exec;
mod funcs;
mod lex;
mod parse;
mod print;

use serde_json::Value;

pub use print::{format_g, quote, to_json};

/// A template that failed to parse or to execute, with Go's wording:
/// `template: :1: function "nope" not defined`,
/// `template: :1:2: executing "" at <.X.Y>: nil pointer evaluating ...`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemplateError {
    #[error("template: :{line}: {message}")]
    Parse { line: usize, message: String },
    #[error("template: :{line}:{column}: executing \"\" at <{node}>: {message}")]
    Exec {
        line: usize,
        column: usize,
        node: String,
        message: String,
    },
}

impl TemplateError {
    fn parse(source: &str, at: usize, message: impl std::fmt::Display) -> TemplateError {
        let (line, _) = line_column(source, at);
        TemplateError::Parse {
            line,
            message: message.to_string(),
        }
    }

    fn exec(source: &str, at: usize, node: &str, message: &str) -> TemplateError {
        let (line, column) = line_column(source, at);
        TemplateError::Exec {
            line,
            column,
            node: node.to_string(),
            message: message.to_string(),
        }
    }

    /// The message without the position.
    pub fn message(&self) -> &str {
        match self {
            TemplateError::Parse { message, .. } | TemplateError::Exec { message, .. } => message,
        }
    }

    /// Whether the template could not be parsed (rather than executed).
    pub fn is_parse(&self) -> bool {
        matches!(self, TemplateError::Parse { .. })
    }
}

/// Go's position: line from 1, column the byte offset in the line.
fn line_column(source: &str, at: usize) -> (usize, usize) {
    let at = at.min(source.len());
    let before = &source.as_bytes()[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => at - nl - 1,
        None => at,
    };
    (line, column)
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    nodes: Vec<parse::Node>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let items = lex::lex(source)?;
        let nodes = parse::parse(source, items)?;
        Ok(Template {
            source: source.to_string(),
            nodes,
        })
    }

    /// Runs the template with `data` as dot (and `$`).
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        exec::execute(&self.source, &self.nodes, data, false)
    }

    /// The fields the template reads from dot, by their first name.
    pub fn fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        parse::fields(&self.nodes, &mut out);
        out
    }

    /// Runs the template for a table's header row, as Docker does: `data`
    /// maps each field to its column title, and Docker's functions
    /// (`json`, `upper`, `pad`, ...) return their first argument.
    pub fn execute_header(&self, header: &Value) -> Result<String, TemplateError> {
        exec::execute(&self.source, &self.nodes, header, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, data: &Value) -> String {
        Template::parse(t)
            .and_then(|t| t.execute(data))
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn common_one_liners() {
        let c = json!({"Config": {"Env": ["A=1", "B=2"], "Labels": {"z": "1", "a": "2"}},
                       "State": {"Running": true, "ExitCode": 0}, "Mounts": []});
        assert_eq!(
            run("{{range .Config.Env}}{{println .}}{{end}}", &c),
            "A=1\nB=2\n"
        );
        assert_eq!(run("{{if .State.Running}}up{{else}}down{{end}}", &c), "up");
        assert_eq!(run("{{len .Mounts}}", &c), "0");
        assert_eq!(
            run(
                "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
                &c
            ),
            "a=2;z=1;"
        );
        assert_eq!(run("{{.Config.Labels}}", &c), "map[a:2 z:1]");
        assert_eq!(run("{{.Nope}}", &c), "<no value>");
        assert_eq!(run("a  {{- .State.ExitCode -}}  b", &c), "a0b");
        assert_eq!(
            run(r#"{{printf "%5.1f|%-4d|%q" 3.14159 7 "x"}}"#, &c),
            "  3.1|7   |\"x\""
        );
    }

    #[test]
    fn errors_name_the_place() {
        let e = Template::parse("{{nope .X}}").unwrap_err();
        assert_eq!(e.to_string(), "template: :1: function \"nope\" not defined");
        let e = Template::parse("x\n{{.A.B}}")
            .unwrap()
            .execute(&json!({"A": "s"}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "template: :2:2: executing \"\" at <.A.B>: can't evaluate field B in type string"
        );
    }

    #[test]
    fn floats_print_as_go() {
        assert_eq!(format_g(1_000_000.0, None, 'e'), "1e+06");
        assert_eq!(format_g(123_456.0, None, 'e'), "123456");
        assert_eq!(format_g(0.0001, None, 'e'), "0.0001");
        assert_eq!(format_g(0.00001, None, 'e'), "1e-05");
        assert_eq!(format_g(2.5, None, 'e'), "2.5");
    }
}
