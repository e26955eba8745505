//! Seccomp: the filter a container's processes run under, as Docker
//! gives it. By default strata's built-in profile (`builtin.rs`,
//! equivalent to Docker's default); `--security-opt seccomp=unconfined`
//! and `--privileged` give none; `--security-opt seccomp=PROFILE.json`
//! a profile in Docker's format (`profile.rs`), read at `create` and
//! kept, compacted, in the container's spec as Docker keeps it.
//!
//! The filter is resolved for the container's bounding set, the host's
//! architecture and kernel, and compiled with libseccomp (`compile.rs`)
//! by the monitor (or the `exec` command) before it forks; the
//! container's process only loads the compiled program
//! (`launch::setup_process`).

mod builtin;
mod compile;
mod profile;

use std::path::Path;

pub use builtin::{default_profile, CLONE_NAMESPACE_FLAGS};
pub use compile::{compile, Program};
pub use profile::{native_arch, parse_kernel_release, resolve, Profile, Rules, Target};

use sha2::{Digest, Sha256};

use super::caps::CapSet;

/// The profile option that means no filter.
pub const UNCONFINED: &str = "unconfined";
/// The profile option that names the built-in profile (the default).
pub const BUILTIN: &str = "builtin";

/// Errors of reading, resolving and compiling a profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    // The causes are in the message, not sources: one line, no repeat.
    #[error("opening seccomp profile ({path}) failed: {error}")]
    Open { path: String, error: std::io::Error },
    #[error("decoding seccomp profile ({path}) failed: {error}")]
    Json {
        path: String,
        error: serde_json::Error,
    },
    #[error("seccomp profile ({path}): {reason}")]
    InFile { path: String, reason: String },
    #[error("seccomp profile: {0}")]
    Invalid(String),
    #[error("compiling the seccomp filter: {0}")]
    Compile(String),
}

/// The value a container's spec keeps for `--security-opt seccomp=VALUE`:
/// `unconfined` and `builtin` as they are, else VALUE is a file whose
/// profile is read, checked and kept as compact JSON (Docker's client
/// does the same). `caps` is the container's bounding set: the profile
/// is resolved and compiled for it, so a bad one fails here.
pub fn profile_option(value: &str, caps: CapSet, cache: &Path) -> Result<String, SeccompError> {
    if value == UNCONFINED || value == BUILTIN {
        return Ok(value.to_string());
    }
    let text = std::fs::read_to_string(value).map_err(|error| SeccompError::Open {
        path: value.to_string(),
        error,
    })?;
    let profile: Profile = serde_json::from_str(&text).map_err(|error| SeccompError::Json {
        path: value.to_string(),
        error,
    })?;
    let compact = compact_json(&text);
    program_for(&compact, || Ok(profile), caps, cache).map_err(|e| match e {
        SeccompError::Invalid(reason) | SeccompError::Compile(reason) => SeccompError::InFile {
            path: value.to_string(),
            reason,
        },
        other => other,
    })?;
    Ok(compact)
}

/// `text` (valid JSON) without the whitespace outside strings, in its
/// own order (what Go's `json.Compact` gives).
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The store's directory of compiled programs (a cache).
pub fn cache_dir(store_root: &Path) -> std::path::PathBuf {
    store_root.join("seccomp")
}

/// What resolution needs to know about this host and `caps`.
pub fn target(caps: CapSet) -> Target {
    let (arch, seccomp_arch) = native_arch();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| parse_kernel_release(r.trim()))
        .unwrap_or((0, 0));
    Target {
        arch,
        seccomp_arch,
        kernel,
        caps: caps.names(),
    }
}

/// Names the built-in profile in cache keys: change it whenever
/// `builtin.rs` changes (a test there pins the profile's digest as a
/// reminder).
pub const BUILTIN_SOURCE: &str = "builtin: moby/profiles seccomp v0.2.3, strata 1";

/// The digest a compiled program is cached under. It covers everything
/// the program is made from, without making it: the profile's source
/// (the JSON a spec keeps, or [`BUILTIN_SOURCE`]), the host's
/// architecture and kernel version, the container's bounding set,
/// libseccomp's version and the form of the cache file.
pub fn cache_key(source: &str, target: &Target) -> String {
    let library = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let kernel = format!("{}.{}", target.kernel.0, target.kernel.1);
    let caps = target.caps.join(",");
    let mut hash = Sha256::new();
    for part in [
        "strata seccomp program 2",
        &library,
        target.arch,
        &kernel,
        &caps,
        source,
    ] {
        hash.update(part.as_bytes());
        hash.update(b"\0");
    }
    hex::encode(hash.finalize())
}

/// The program for the profile `source` (parsed by `parse` only when
/// the cache does not have it) and `caps`.
fn program_for(
    source: &str,
    parse: impl FnOnce() -> Result<Profile, SeccompError>,
    caps: CapSet,
    cache: &Path,
) -> Result<Option<Program>, SeccompError> {
    let target = target(caps);
    let key = cache_key(source, &target);
    if let Some(program) = compile::read_cached(cache, &key) {
        return Ok(Some(program));
    }
    let Some(rules) = resolve(&parse()?, &target)? else {
        return Ok(None);
    };
    let program = compile(&rules)?;
    if let Err(e) = compile::store_cached(cache, &key, &program) {
        tracing::debug!("seccomp cache {}: {e}", cache.display());
    }
    Ok(Some(program))
}

/// Whether the kernel has seccomp filters (CONFIG_SECCOMP_FILTER): its
/// `actions_avail` (Linux 4.14 and later) is there.
pub fn kernel_has_seccomp_filters() -> bool {
    Path::new("/proc/sys/kernel/seccomp/actions_avail").exists()
}

/// The program a container's processes get: none if `privileged` or
/// the profile (a spec's value: empty or `builtin` for the default,
/// `unconfined`, or a profile's JSON) is unconfined. `cache` is the
/// store's directory of compiled programs.
pub fn container_program(
    stored_profile: &str,
    privileged: bool,
    caps: CapSet,
    cache: &Path,
) -> Result<Option<Program>, SeccompError> {
    if privileged || stored_profile == UNCONFINED {
        return Ok(None);
    }
    let builtin = stored_profile.is_empty() || stored_profile == BUILTIN;
    if !kernel_has_seccomp_filters() {
        // What Docker does: the default quietly goes, a profile asked
        // for cannot be honoured.
        if builtin {
            tracing::warn!(
                "seccomp is not enabled in this kernel: running without the default profile"
            );
            return Ok(None);
        }
        return Err(SeccompError::Invalid(
            "seccomp is not enabled in this kernel, cannot run a custom seccomp profile".into(),
        ));
    }
    if builtin {
        return program_for(BUILTIN_SOURCE, || Ok(default_profile()), caps, cache);
    }
    let parse =
        || serde_json::from_str(stored_profile).map_err(|e| SeccompError::Invalid(e.to_string()));
    program_for(stored_profile, parse, caps, cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_outside_strings_only() {
        assert_eq!(
            compact_json("{ \"a b\" : [ 1, \"c\\\" d\" ]\n}"),
            "{\"a b\":[1,\"c\\\" d\"]}"
        );
    }
}
