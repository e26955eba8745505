//! The host as Docker's `info` describes it: kernel, distribution, CPUs,
//! memory, name, architecture. Read from /proc and /etc/os-release;
//! anything unreadable is left empty (or 0), never guessed.

/// What the host is.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// `uname -r`
    pub kernel_version: String,
    /// os-release's PRETTY_NAME
    pub operating_system: String,
    /// os-release's VERSION_ID
    pub os_version: String,
    /// `uname -m` (x86_64)
    pub architecture: String,
    /// Go's name for it (amd64), as `version` prints OS/Arch
    pub go_arch: String,
    pub cpus: u64,
    pub memory_total: u64,
    pub hostname: String,
}

impl Host {
    pub fn read() -> Host {
        let os_release = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        Host {
            kernel_version: proc_line("/proc/sys/kernel/osrelease"),
            operating_system: os_release_field(&os_release, "PRETTY_NAME"),
            os_version: os_release_field(&os_release, "VERSION_ID"),
            architecture: std::env::consts::ARCH.to_string(),
            go_arch: go_arch(std::env::consts::ARCH).to_string(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(0),
            memory_total: memory_total(),
            hostname: proc_line("/proc/sys/kernel/hostname"),
        }
    }
}

fn proc_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A field of os-release, unquoted.
fn os_release_field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .unwrap_or_default()
}

/// MemTotal from /proc/meminfo, in bytes.
fn memory_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        })
        .unwrap_or(0)
        * 1024
}

/// Go's GOARCH for Rust's architecture name.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_are_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\n";
        assert_eq!(
            os_release_field(text, "PRETTY_NAME"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_release_field(text, "VERSION_ID"), "12");
        assert_eq!(os_release_field(text, "NAME"), "Debian GNU/Linux");
        assert_eq!(os_release_field(text, "ID"), "");
        assert_eq!(go_arch("x86_64"), "amd64");
    }
}
