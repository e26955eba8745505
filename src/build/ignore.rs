//! `.dockerignore` with Docker's rules: one pattern a line, `#` comments,
//! patterns cleaned (`./a/../b` is `b`, a leading `/` dropped), `*` and
//! `?` within one path component, `**` across any number of them, `!`
//! re-includes, and the last pattern that matches a path decides. A
//! pattern that matches a directory matches everything below it.

use globset::{GlobBuilder, GlobMatcher};

struct Pattern {
    matcher: GlobMatcher,
    exception: bool,
}

/// The patterns of one context.
#[derive(Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
}

impl Ignore {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut out = Ignore::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                continue;
            }
            let matcher = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("invalid .dockerignore pattern {pattern:?}: {e}"))?
                .compile_matcher();
            out.has_exceptions |= exception;
            out.patterns.push(Pattern { matcher, exception });
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (relative to the context, `/`-separated) is left out.
    pub fn excludes(&self, rel: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            if matches_or_parent(&p.matcher, rel) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether a walk must still look inside an excluded directory `rel`
    /// (an exception may re-include something below it).
    pub fn may_include_below(&self, _rel: &str) -> bool {
        self.has_exceptions
    }
}

fn matches_or_parent(matcher: &GlobMatcher, rel: &str) -> bool {
    if matcher.is_match(rel) {
        return true;
    }
    let mut end = rel.len();
    while let Some(slash) = rel[..end].rfind('/') {
        if matcher.is_match(&rel[..slash]) {
            return true;
        }
        end = slash;
    }
    false
}

/// Go's `filepath.Clean` on a `/`-separated pattern, without a leading `/`.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let i =
            Ignore::parse("# comment\n*.md\n!README.md\n/build\n**/*.tmp\ndocs/**\n!docs/keep\n")
                .unwrap();
        assert!(i.excludes("notes.md"));
        assert!(!i.excludes("README.md"));
        assert!(!i.excludes("sub/notes.md"), "* stays in one component");
        assert!(i.excludes("build"));
        assert!(i.excludes("build/out/x"), "below an excluded directory");
        assert!(i.excludes("a/b/c.tmp"));
        assert!(i.excludes("x.tmp"));
        assert!(i.excludes("docs/a"));
        assert!(!i.excludes("docs/keep"));
        assert!(!i.excludes("src/main.rs"));
        let last_wins = Ignore::parse("!a\na\n").unwrap();
        assert!(last_wins.excludes("a"));
    }
}
