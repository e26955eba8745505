//! containerd's filter syntax, as Walk (`ctr snapshots ls`, the CRI, the
//! gc) sends it: `selector[,selector...]`, every selector of a filter must
//! match, any filter of a list may. A selector is a field path
//! (`name`, `parent`, `kind`, `labels.KEY`, `labels."KEY.WITH/DOTS"`),
//! alone (the field is present) or with `==`, `!=` or `~=` (a regular
//! expression) and a value, bare or quoted with `"`, `/` or `|`.

use std::collections::BTreeMap;

use super::SnapshotterError;

#[derive(Debug)]
enum Operator {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(regex::Regex),
}

#[derive(Debug)]
struct Selector {
    fieldpath: Vec<String>,
    operator: Operator,
}

/// One parsed filter: a conjunction of selectors.
#[derive(Debug)]
pub struct Filter(Vec<Selector>);

/// What a filter looks at.
pub trait Fields {
    fn field(&self, path: &[String]) -> Option<String>;
}

/// A snapshot's fields as containerd's snapshot adaptor names them.
pub struct SnapshotFields<'a> {
    pub name: &'a str,
    pub parent: &'a str,
    pub kind: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

impl Fields for SnapshotFields<'_> {
    /// As containerd's snapshot adaptor: `name`, `parent` and `kind` are
    /// always present (an empty parent too, so `parent==""` finds the
    /// snapshots without one); a label only when the snapshot has it.
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str) {
            Some("name") => Some(self.name.to_string()),
            Some("parent") => Some(self.parent.to_string()),
            Some("kind") => Some(self.kind.to_string()),
            Some("labels") => self.labels.get(&path[1..].join(".")).cloned(),
            _ => None,
        }
    }
}

impl Filter {
    pub fn parse(input: &str) -> Result<Filter, SnapshotterError> {
        let bad =
            |reason: &str| SnapshotterError::InvalidArgument(format!("filter {input:?}: {reason}"));
        if input.trim().is_empty() {
            return Ok(Filter(Vec::new()));
        }
        let mut scanner = Scanner {
            chars: input.chars().collect(),
            pos: 0,
        };
        let mut selectors = Vec::new();
        loop {
            scanner.skip_spaces();
            let mut fieldpath = vec![scanner.field().map_err(|r| bad(&r))?];
            while scanner.eat('.') {
                fieldpath.push(scanner.field().map_err(|r| bad(&r))?);
            }
            scanner.skip_spaces();
            let operator = match scanner.operator() {
                None => Operator::Present,
                Some(op) => {
                    scanner.skip_spaces();
                    let value = scanner.value().map_err(|r| bad(&r))?;
                    match op {
                        "==" => Operator::Equal(value),
                        "!=" => Operator::NotEqual(value),
                        _ => Operator::Matches(
                            regex::Regex::new(&value).map_err(|e| bad(&e.to_string()))?,
                        ),
                    }
                }
            };
            selectors.push(Selector {
                fieldpath,
                operator,
            });
            scanner.skip_spaces();
            if scanner.at_end() {
                break;
            }
            if !scanner.eat(',') {
                return Err(bad(&format!("unexpected {:?}", scanner.rest())));
            }
        }
        Ok(Filter(selectors))
    }

    /// containerd's rules: `==` needs the field present, `!=` and `~=`
    /// compare an absent field as the empty string.
    pub fn matches(&self, item: &dyn Fields) -> bool {
        self.0.iter().all(|s| {
            let value = item.field(&s.fieldpath);
            match &s.operator {
                Operator::Present => value.is_some(),
                Operator::Equal(v) => value.as_ref() == Some(v),
                Operator::NotEqual(v) => value.unwrap_or_default() != *v,
                Operator::Matches(re) => re.is_match(&value.unwrap_or_default()),
            }
        })
    }
}

/// Whether `item` passes any of `filters` (all when there are none).
pub fn any_matches(filters: &[Filter], item: &dyn Fields) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.matches(item))
}

struct Scanner {
    chars: Vec<char>,
    pos: usize,
}

impl Scanner {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn rest(&self) -> String {
        self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .collect()
    }
    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn field(&mut self) -> Result<String, String> {
        if let Some(q) = self.peek().filter(|c| matches!(c, '"' | '/' | '|')) {
            return self.quoted(q);
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(match self.peek() {
                Some(c) => format!("expected a field name at {c:?}"),
                None => "expected a field name at the end".into(),
            });
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn operator(&mut self) -> Option<&'static str> {
        for op in ["==", "!=", "~="] {
            let mut it = op.chars();
            if self.chars.get(self.pos) == it.next().as_ref()
                && self.chars.get(self.pos + 1) == it.next().as_ref()
            {
                self.pos += 2;
                return Some(op);
            }
        }
        None
    }

    fn value(&mut self) -> Result<String, String> {
        if let Some(q) = self.peek().filter(|c| matches!(c, '"' | '/' | '|')) {
            return self.quoted(q);
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c != ',' && !c.is_whitespace()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err("expected a value".into());
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// A quoted literal with Go's escapes for the common characters.
    fn quoted(&mut self, quote: char) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or("quoted literal not terminated")?;
            self.pos += 1;
            if c == quote {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = self.peek().ok_or("quoted literal not terminated")?;
            self.pos += 1;
            let unescaped = match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'a' => '\x07',
                'b' => '\x08',
                'f' => '\x0c',
                'v' => '\x0b',
                '\\' => '\\',
                c if c == quote => c,
                // A regular expression keeps its escapes.
                c if quote != '"' => {
                    out.push('\\');
                    c
                }
                c => return Err(format!("unknown escape \\{c}")),
            };
            out.push(unescaped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(labels: &'a BTreeMap<String, String>) -> SnapshotFields<'a> {
        SnapshotFields {
            name: "sha256:abc",
            parent: "",
            kind: "committed",
            labels,
        }
    }

    fn matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
        Filter::parse(filter).unwrap().matches(&fields(labels))
    }

    #[test]
    fn selectors_match_as_containerd_documents() {
        let mut labels = BTreeMap::new();
        labels.insert("containerd.io/gc.root".to_string(), "yes".to_string());
        labels.insert("a".to_string(), "1".to_string());
        assert!(matches("kind==committed", &labels));
        assert!(!matches("kind==active", &labels));
        assert!(matches("name~=^sha256:", &labels));
        assert!(matches("name~=/^sha256:a.c$/", &labels));
        assert!(matches(r#"labels."containerd.io/gc.root""#, &labels));
        assert!(matches(
            r#"labels."containerd.io/gc.root"==yes,labels.a==1"#,
            &labels
        ));
        assert!(!matches(
            r#"labels."containerd.io/gc.root"==yes,labels.a!=1"#,
            &labels
        ));
        // The fields containerd always reports, an empty parent too: the
        // metadata layer finds a remote layer at the root by `parent==""`.
        assert!(matches("parent", &labels));
        assert!(matches(r#"parent=="""#, &labels));
        assert!(!matches(r#"parent=="x""#, &labels));
        assert!(!matches("labels.b", &labels));
        assert!(matches("labels.b!=1", &labels));
        assert!(matches("labels.b~=^$", &labels));
        assert!(matches("kind == committed , labels.a", &labels));
    }

    #[test]
    fn bad_filters_are_invalid_arguments() {
        for bad in ["kind==", "kind==a,", "labels.\"x", "name~=(", "kind=x"] {
            let err = Filter::parse(bad).unwrap_err();
            assert!(
                matches!(err, SnapshotterError::InvalidArgument(_)),
                "{bad}: {err}"
            );
        }
    }
}
