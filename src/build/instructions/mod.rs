//! One file per family of instructions, each a method of the running
//! [`Builder`](super::execute::Builder): `meta.rs` (those that change only
//! the config), `workdir.rs`, `run.rs` (a container through the
//! launcher; `mounts.rs` for `RUN --mount`), `copy.rs` (COPY and ADD;
//! `sources.rs` for what ADD fetches or unpacks).

mod copy;
mod meta;
mod mounts;
mod run;
mod sources;
mod workdir;

pub use meta::duration_ns;
pub use sources::download;
pub use sources::file_digest as hash_file;

/// A list as Go's `%q` prints a `[]string` (Docker's history texts).
pub fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(" "))
}
