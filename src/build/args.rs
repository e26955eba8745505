//! Build arguments: `--build-arg` values, ARG declarations and their
//! scopes. ARGs before the first FROM are global and serve FROM lines; a
//! stage sees an ARG only once it declares it (a declaration without a
//! default takes the global's value). The predefined ARGs are there
//! without a declaration: the proxy variables (passed to RUN, left out of
//! the history) and, for FROM lines, the platform ones (`TARGETPLATFORM`,
//! `BUILDARCH`, ...), which a stage gets by declaring them. A
//! `--build-arg` that no ARG declares is a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::error::BuildError;
use super::expand::{expand_word, split_words, Vars};
use super::parse::Instruction;

/// Proxy variables every RUN gets when given with `--build-arg`.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

pub use crate::registry::Platform;

/// `linux/amd64` (with `/variant` when there is one).
pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Whether `spec` (`linux`, `linux/amd64`, `linux/amd64/v8`...) names
/// the platform `p`.
pub fn platform_matches(p: &Platform, spec: &str) -> bool {
    let mut parts = spec.split('/');
    let os = parts.next().unwrap_or("");
    let arch = parts.next();
    let variant = parts.next();
    let arch_ok = |a: &str| {
        a == p.architecture
            || (a == "x86_64" && p.architecture == "amd64")
            || (a == "aarch64" && p.architecture == "arm64")
    };
    os == p.os
        && arch.is_none_or(arch_ok)
        && variant.is_none_or(|v| p.variant.as_deref().is_none_or(|own| own == v))
}

/// `--build-arg` values and what the build has consumed of them.
pub struct BuildArgs {
    given: BTreeMap<String, String>,
    /// Shared by the stages built at the same time.
    consumed: Mutex<BTreeSet<String>>,
    pub platform: Platform,
}

/// One ARG declaration: name and default (unexpanded).
pub fn parse_arg(
    ins: &Instruction,
    escape: char,
    file: &str,
) -> Result<Vec<(String, Option<String>)>, BuildError> {
    let mut out = Vec::new();
    for word in split_words(&ins.args, escape) {
        let (name, default) = match word.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (word.clone(), None),
        };
        if name.is_empty() {
            return Err(BuildError::At {
                file: file.to_string(),
                line: ins.line,
                message: format!("ARG {}: a name is required", ins.args),
            });
        }
        out.push((name, default));
    }
    Ok(out)
}

impl BuildArgs {
    pub fn new(given: BTreeMap<String, String>, platform: Platform) -> BuildArgs {
        BuildArgs {
            given,
            consumed: Mutex::new(BTreeSet::new()),
            platform,
        }
    }

    /// The predefined platform ARGs and their values.
    pub fn platform_args(&self) -> Vec<(String, String)> {
        let p = &self.platform;
        let v = p.variant.clone().unwrap_or_default();
        let mut out = Vec::new();
        for prefix in ["TARGET", "BUILD"] {
            out.push((format!("{prefix}PLATFORM"), platform_string(p)));
            out.push((format!("{prefix}OS"), p.os.clone()));
            out.push((format!("{prefix}ARCH"), p.architecture.clone()));
            out.push((format!("{prefix}VARIANT"), v.clone()));
        }
        out
    }

    /// The value `--build-arg` gave `name`, marking it consumed.
    pub fn given(&self, name: &str) -> Option<String> {
        let v = self.given.get(name).cloned();
        if v.is_some() {
            self.consumed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string());
        }
        v
    }

    /// Proxy variables given with `--build-arg` (for every RUN).
    pub fn proxies(&self) -> Vec<(String, String)> {
        PROXY_ARGS
            .iter()
            .filter_map(|p| self.given(p).map(|v| (p.to_string(), v)))
            .collect()
    }

    /// Given build args no ARG took, sorted.
    pub fn unconsumed(&self) -> Vec<String> {
        let consumed = self.consumed.lock().unwrap_or_else(|e| e.into_inner());
        self.given
            .keys()
            .filter(|k| !consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// The variables FROM lines see: the platform ARGs and the global
    /// ARGs' values.
    pub fn global_vars(
        &self,
        global_args: &[Instruction],
        escape: char,
        file: &str,
    ) -> Result<Vars, BuildError> {
        let mut vars: Vars = self.platform_args().into_iter().collect();
        for ins in global_args {
            for (name, default) in parse_arg(ins, escape, file)? {
                let value = match self.given(&name) {
                    Some(v) => Some(v),
                    None => match default {
                        Some(d) => {
                            Some(expand_word(&d, &vars, escape).map_err(|e| BuildError::At {
                                file: file.to_string(),
                                line: ins.line,
                                message: format!("ARG {name}: {e}"),
                            })?)
                        }
                        None => None,
                    },
                };
                match value {
                    Some(v) => {
                        vars.insert(name, v);
                    }
                    None => {
                        vars.remove(&name);
                    }
                }
            }
        }
        Ok(vars)
    }
}
