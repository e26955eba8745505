//! Networking of an ordinary user's container through `slirp4netns`, as
//! rootless podman offers it (`--network slirp4netns[:OPTION,...]`;
//! docs/rootless.md): the monitor, root in the container's user
//! namespace, makes the container's network namespace and starts
//! slirp4netns on it (`--configure`: a tap device `tap0` with
//! 10.0.2.100/24, the gateway 10.0.2.2 and a DNS forwarder at 10.0.2.3,
//! MTU 65520). The gateway reaches the host's loopback only with
//! `allow_host_loopback=true` (podman's default is false). Each `-p` is
//! a host socket of slirp4netns's, asked for on its API socket
//! (`add_hostfwd`). It runs as a [`Helper`] (`helper.rs`), as pasta does:
//! stopped with the container, gone with a monitor killed with -9, and
//! recorded (`slirp4netns.process`) for the next command to collect.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use super::config::PortBinding;
use super::error::NetworkError;
use super::helper::{self, Helper, StartFiles};

/// Whether `slirp4netns` is on PATH.
pub fn available() -> bool {
    helper::program("slirp4netns").is_some()
}

/// The options of `--network slirp4netns:OPTION,...` strata carries out
/// (podman's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `allow_host_loopback=true`: the gateway address reaches the
    /// host's 127.0.0.1.
    pub allow_host_loopback: bool,
    /// `mtu=N` (65520 unless given).
    pub mtu: u32,
    /// `cidr=A.B.C.D/N` (10.0.2.0/24 unless given).
    pub cidr: ipnet::Ipv4Net,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            allow_host_loopback: false,
            mtu: DEFAULT_MTU,
            cidr: ipnet::Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 0), 24).unwrap_or_default(),
        }
    }
}

/// slirp4netns's MTU for podman (the largest its tap takes, less one).
const DEFAULT_MTU: u32 = 65520;

/// Parses podman's option list (after `slirp4netns:`): `OPTION=VALUE`
/// separated by commas. An option podman has but strata does not carry
/// out, or one neither has, is a one-line error.
pub fn parse_options(text: &str) -> Result<Options, String> {
    let mut options = Options::default();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        match key {
            "allow_host_loopback" => {
                options.allow_host_loopback = match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(format!(
                            "invalid value for slirp4netns option allow_host_loopback: {value:?} (true or false)"
                        ))
                    }
                }
            }
            "mtu" => {
                options.mtu = value
                    .parse()
                    .ok()
                    .filter(|m| (68..=65521).contains(m))
                    .ok_or_else(|| {
                        format!("invalid value for slirp4netns option mtu: {value:?} (68 to 65521)")
                    })?
            }
            "cidr" => {
                options.cidr = value
                    .parse::<ipnet::Ipv4Net>()
                    .ok()
                    .filter(|n| n.prefix_len() <= 25)
                    .map(|n| n.trunc())
                    .ok_or_else(|| {
                        format!("invalid value for slirp4netns option cidr: {value:?} (an IPv4 CIDR of /25 or wider, such as 10.0.2.0/24)")
                    })?
            }
            "port_handler" if value == "slirp4netns" => {}
            "port_handler" | "enable_ipv6" | "outbound_addr" | "outbound_addr6" => {
                return Err(format!(
                    "slirp4netns option {item:?} is not supported by strata (allow_host_loopback, cidr, mtu and port_handler=slirp4netns are)"
                ))
            }
            _ => return Err(format!("unknown option for slirp4netns: {key:?}")),
        }
    }
    Ok(options)
}

impl Options {
    /// The address of slirp4netns's DNS forwarder in the container (the
    /// network's third address).
    pub fn dns_address(&self) -> Ipv4Addr {
        nth_address(&self.cidr, 3)
    }
}

fn nth_address(net: &ipnet::Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(n))
}

/// Starts slirp4netns on the network namespace `netns` (a descriptor of
/// this process) with `options`, and publishes `ports` through its API
/// socket (`slirp4netns.sock` in the container's directory `dir`, removed
/// then; its messages in `slirp4netns.log` there, removed too). Returns
/// once the namespace is configured and every port listens.
pub fn start(
    netns: BorrowedFd,
    options: &Options,
    ports: &[PortBinding],
    dir: &Path,
) -> Result<Helper, NetworkError> {
    let program = helper::require("slirp4netns", "slirp4netns")?;
    helper::check_tun("slirp4netns")?;
    if let Some(b) = ports.iter().find(|b| b.host_ip.contains(':')) {
        return Err(NetworkError::Invalid(format!(
            "rootless: slirp4netns publishes ports on IPv4 host addresses only, not {}",
            b.host_ip
        )));
    }
    let mut files = StartFiles::new();
    // The socket's name is relative to slirp4netns's working directory:
    // a full path in a home directory may exceed the 107 bytes of a
    // socket address.
    files.add(dir.join(API_SOCKET));
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| NetworkError::sys("pipe2", e))?;
    let (ready_fd, _) = helper::inheritable(ready_write.as_fd(), "the ready pipe")?;
    drop(ready_write);
    let (inherited, netns_path) = helper::inheritable(netns, "the network namespace")?;
    let mut command = Command::new(&program);
    command.current_dir(dir);
    command.args(["--configure", "--netns-type=path", "--enable-seccomp"]);
    command.arg(format!("--mtu={}", options.mtu));
    command.arg(format!("--cidr={}", options.cidr));
    if !options.allow_host_loopback {
        command.arg("--disable-host-loopback");
    }
    command.arg(format!("--ready-fd={}", ready_fd.as_raw_fd()));
    command.args(["--api-socket", API_SOCKET]);
    command.args([netns_path.as_str(), "tap0"]);
    let mut slirp = Helper::spawn(
        "slirp4netns",
        command,
        &mut files,
        dir.join("slirp4netns.log"),
    )?;
    drop((inherited, ready_fd));
    slirp.wait_ready(|| said_ready(&ready_read))?;
    let mut published = Vec::new();
    for b in ports {
        let host_port = helper::choose_host_port(b)?;
        let host_ip = if b.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &b.host_ip
        };
        // slirp4netns's answer to a port in use says nothing of it.
        helper::free_port(host_ip, &b.proto, host_port).map_err(|_| {
            NetworkError::Invalid(format!(
                "rootless: slirp4netns: Bind for {host_ip}:{host_port} failed: port is already allocated"
            ))
        })?;
        let request = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": b.proto, "host_addr": host_ip, "host_port": host_port,
                "guest_port": b.container_port,
            }
        });
        api_call(dir, &request).map_err(|why| {
            NetworkError::Invalid(format!(
                "rootless: slirp4netns could not publish {host_ip}:{host_port}->{}/{}: {why}",
                b.container_port, b.proto
            ))
        })?;
        published.push(helper::published_port(b, host_ip, host_port));
    }
    slirp.set_published(published);
    Ok(slirp)
}

/// The API socket's name in the container's directory.
const API_SOCKET: &str = "slirp4netns.sock";

/// Whether slirp4netns has written to its ready descriptor.
fn said_ready(ready: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    matches!(nix::unistd::read(ready.as_raw_fd(), &mut byte), Ok(1))
}

/// Sends one request to slirp4netns's API socket in `dir` (reached
/// through a descriptor of the directory, for a short address) and
/// returns its error's description, if it answers one.
fn api_call(dir: &Path, request: &serde_json::Value) -> Result<(), String> {
    let dir_fd = std::fs::File::open(dir).map_err(|e| e.to_string())?;
    let address = format!("/proc/self/fd/{}/{API_SOCKET}", dir_fd.as_raw_fd());
    let mut stream = std::os::unix::net::UnixStream::connect(&address)
        .map_err(|e| format!("its API socket: {e}"))?;
    stream
        .write_all(request.to_string().as_bytes())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("its API socket: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("its API socket: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|_| format!("an answer that is not JSON: {answer:?}"))?;
    match value.get("error") {
        None => Ok(()),
        Some(e) => Err(e
            .get("desc")
            .and_then(|d| d.as_str())
            .unwrap_or("an error")
            .to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podmans_options_are_parsed() {
        assert_eq!(parse_options("").unwrap(), Options::default());
        let o = parse_options("allow_host_loopback=true,mtu=1500,cidr=10.5.0.0/16").unwrap();
        assert!(o.allow_host_loopback);
        assert_eq!(o.mtu, 1500);
        assert_eq!(o.dns_address(), Ipv4Addr::new(10, 5, 0, 3));
        assert_eq!(Options::default().dns_address(), Ipv4Addr::new(10, 0, 2, 3));
        assert!(
            !parse_options("allow_host_loopback=false")
                .unwrap()
                .allow_host_loopback
        );
        assert!(parse_options("port_handler=slirp4netns").is_ok());
    }

    #[test]
    fn bad_options_are_one_line_errors() {
        assert_eq!(
            parse_options("allow_host_loopbak=true").unwrap_err(),
            "unknown option for slirp4netns: \"allow_host_loopbak\""
        );
        assert!(parse_options("allow_host_loopback=yes")
            .unwrap_err()
            .contains("true or false"));
        assert!(parse_options("mtu=70000").unwrap_err().contains("mtu"));
        assert!(parse_options("cidr=10.0.2.0/30")
            .unwrap_err()
            .contains("cidr"));
        assert!(parse_options("port_handler=rootlesskit")
            .unwrap_err()
            .contains("not supported by strata"));
    }
}
