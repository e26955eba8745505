//! `strata info`: the store, its containers and images, and the host,
//! in Docker's `info` fields (`docker info --format '{{json .}}'`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Host, SystemError};
use crate::container::spec::Status;
use crate::store::Store;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemInfo {
    pub containers: u64,
    pub containers_running: u64,
    pub containers_paused: u64,
    pub containers_stopped: u64,
    pub images: u64,
    /// `strata-fs` (FUSE), or `overlay` where the kernel overlayfs
    /// fallback is in use.
    pub driver: String,
    pub driver_status: Vec<[String; 2]>,
    pub plugins: Plugins,
    pub logging_driver: String,
    pub cgroup_driver: String,
    /// The host's cgroup mode as Docker names it: "2" on a unified
    /// hierarchy, "1" otherwise (a hybrid host included).
    pub cgroup_version: String,
    pub kernel_version: String,
    pub operating_system: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: u64,
    pub mem_total: u64,
    pub index_server_address: String,
    pub registry_config: RegistryConfig,
    /// The store's root (Docker's name for its own).
    pub docker_root_dir: String,
    pub name: String,
    pub labels: Vec<String>,
    pub experimental_build: bool,
    pub server_version: String,
    pub runtimes: BTreeMap<String, Runtime>,
    pub default_runtime: String,
    pub init_binary: String,
    pub live_restore_enabled: bool,
    pub security_options: Vec<String>,
    pub warnings: Vec<String>,
    /// strata's own: the store and what deduplication saves.
    pub store: StoreInfo,
    #[serde(skip)]
    pub counts: ContainerCounts,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Plugins {
    pub volume: Vec<String>,
    pub network: Vec<String>,
    pub authorization: Option<Vec<String>>,
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryConfig {
    #[serde(rename = "InsecureRegistryCIDRs")]
    pub insecure_registry_cidrs: Vec<String>,
    pub index_configs: BTreeMap<String, IndexConfig>,
    pub mirrors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexConfig {
    pub name: String,
    pub mirrors: Vec<String>,
    pub secure: bool,
    pub official: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Runtime {
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreInfo {
    pub root: String,
    pub schema_version: i64,
    /// Regular files' bytes of every layer, as layer stores keep them.
    pub layer_file_bytes: u64,
    /// Regular files in layers (references to stored contents).
    pub layer_files: u64,
    /// Bytes stored: each content once.
    pub stored_bytes: u64,
    pub stored_files: u64,
    pub deduplication_saved_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerCounts {
    pub running: u64,
    pub paused: u64,
    pub stopped: u64,
}

/// What `info` reports about `store` and the host.
pub fn system_info(store: &Store) -> Result<SystemInfo, SystemError> {
    let host = Host::read();
    let mut counts = ContainerCounts::default();
    let containers = crate::container::list_reconciled(store)?;
    for c in &containers {
        match c.state.status {
            Status::Running | Status::Restarting => counts.running += 1,
            Status::Paused => counts.paused += 1,
            _ => counts.stopped += 1,
        }
    }
    let images = crate::image::list_images(store)?.len() as u64;
    let dedup = crate::store::deduplication(store)?;
    let overlay = crate::container::launch::rootfs::uses_overlay();
    let root = store.root().display().to_string();
    let mut driver_status = vec![[
        "Backing Filesystem".to_string(),
        backing_filesystem(store.root()),
    ]];
    if overlay {
        driver_status.push([
            "Layers".to_string(),
            "extracted to layer directories for kernel overlayfs (no /dev/fuse, or STRATA_ROOTFS=overlay)".to_string(),
        ]);
    }
    let mut warnings = Vec::new();
    let mut security_options = Vec::new();
    if crate::container::launch::seccomp::kernel_has_seccomp_filters() {
        security_options.push("name=seccomp,profile=default".to_string());
    } else {
        warnings.push("WARNING: the kernel has no seccomp filters: containers run without the default profile".to_string());
    }
    if !nix::unistd::geteuid().is_root() {
        security_options.push("name=rootless".to_string());
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "strata".to_string());
    let mut runtimes = BTreeMap::new();
    runtimes.insert("strata".to_string(), Runtime { path: exe });
    let mut index_configs = BTreeMap::new();
    index_configs.insert(
        "docker.io".to_string(),
        IndexConfig {
            name: "docker.io".into(),
            mirrors: Vec::new(),
            secure: true,
            official: true,
        },
    );
    Ok(SystemInfo {
        containers: containers.len() as u64,
        containers_running: counts.running,
        containers_paused: counts.paused,
        containers_stopped: counts.stopped,
        images,
        driver: if overlay { "overlay" } else { "strata-fs" }.to_string(),
        driver_status,
        plugins: Plugins {
            volume: vec!["local".into()],
            network: vec!["bridge".into(), "host".into(), "null".into()],
            authorization: None,
            log: vec!["json-file".into()],
        },
        logging_driver: "json-file".into(),
        cgroup_driver: "cgroupfs".into(),
        cgroup_version: cgroup_version().into(),
        kernel_version: host.kernel_version,
        operating_system: host.operating_system,
        os_version: host.os_version,
        os_type: "linux".into(),
        architecture: host.architecture,
        ncpu: host.cpus,
        mem_total: host.memory_total,
        index_server_address: "https://index.docker.io/v1/".into(),
        registry_config: RegistryConfig {
            // Plain HTTP is used for these without asking (README).
            insecure_registry_cidrs: vec!["127.0.0.0/8".into()],
            index_configs,
            mirrors: Vec::new(),
        },
        docker_root_dir: root.clone(),
        name: host.hostname,
        labels: Vec::new(),
        experimental_build: false,
        server_version: super::VERSION.into(),
        runtimes,
        default_runtime: "strata".into(),
        init_binary: "strata".into(),
        live_restore_enabled: false,
        security_options,
        warnings,
        store: StoreInfo {
            root,
            schema_version: crate::store::SCHEMA_VERSION,
            layer_file_bytes: dedup.logical_bytes,
            layer_files: dedup.file_references,
            stored_bytes: dedup.stored_bytes,
            stored_files: dedup.stored_files,
            deduplication_saved_bytes: dedup.logical_bytes.saturating_sub(dedup.stored_bytes),
        },
        counts,
    })
}

/// "2" where /sys/fs/cgroup is the unified hierarchy, else "1", as
/// Docker reports it.
fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

/// The name Docker gives the filesystem under the store.
fn backing_filesystem(root: &std::path::Path) -> String {
    let Ok(fs) = nix::sys::statfs::statfs(root) else {
        return "unknown".into();
    };
    // Magic numbers from linux/magic.h.
    let magic = fs.filesystem_type().0 as u64;
    match magic {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0x6969 => "nfs",
        0xF2F5_2010 => "f2fs",
        0x6573_5546 => "fuse",
        0x4d44 => "msdos",
        _ => return format!("unknown (0x{magic:x})"),
    }
    .to_string()
}
