//! `strata version`: one program is both Docker's client and its
//! engine, so both halves carry strata's version; the components are
//! what strata is made of (its filesystem, its launcher, the libseccomp
//! it links), not containerd and runc, which it does not use.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Host, RUST_VERSION, VERSION};

#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    #[serde(rename = "Client")]
    pub client: ClientVersion,
    #[serde(rename = "Server")]
    pub server: ServerVersion,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientVersion {
    pub version: String,
    pub rust_version: String,
    pub os: String,
    pub arch: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerVersion {
    pub components: Vec<Component>,
    pub version: String,
    pub rust_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Component {
    pub name: String,
    pub version: String,
    /// Shown after the version, in this order.
    pub details: BTreeMap<String, String>,
}

/// The versions of strata and of what it is made of.
pub fn version_info() -> VersionInfo {
    let host = Host::read();
    let seccomp = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unavailable".into());
    let details = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let components = vec![
        Component {
            name: "Engine".into(),
            version: VERSION.into(),
            details: details(&[
                ("Arch", &host.go_arch),
                ("KernelVersion", &host.kernel_version),
                ("Os", "linux"),
                ("RustVersion", RUST_VERSION),
            ]),
        },
        Component {
            name: "strata-fs".into(),
            version: VERSION.into(),
            details: details(&[("Kind", "FUSE union filesystem (built in)")]),
        },
        Component {
            name: "launcher".into(),
            version: VERSION.into(),
            details: details(&[("Kind", "built in (no runc or containerd)")]),
        },
        Component {
            name: "libseccomp".into(),
            version: seccomp,
            details: BTreeMap::new(),
        },
    ];
    VersionInfo {
        client: ClientVersion {
            version: VERSION.into(),
            rust_version: RUST_VERSION.into(),
            os: "linux".into(),
            arch: host.go_arch.clone(),
        },
        server: ServerVersion {
            components,
            version: VERSION.into(),
            rust_version: RUST_VERSION.into(),
            os: "linux".into(),
            arch: host.go_arch,
            kernel_version: host.kernel_version,
        },
    }
}
