//! What the network tests of both test binaries (containers and build)
//! share, inside the test's own network namespace
//! (`harness::private_network`, entered by `Env::new`): a busybox httpd
//! of the test's standing for a server on the host (killed by pid on
//! drop), a free port, the namespace's links, the store's address
//! leases. The build tests include this file with `#[path]`.

use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

use crate::harness::{busybox, eventually, Env};

/// A port nothing listens on now, on `ip`.
pub fn free_port_on(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A port nothing listens on now, on loopback.
pub fn free_port() -> u16 {
    free_port_on(IpAddr::from([127, 0, 0, 1]))
}

/// Links (interfaces) of the test's namespace whose name starts with
/// `prefix` (without a `@peer` suffix).
pub fn links(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Address leases the store holds.
pub fn leases(env: &Env) -> i64 {
    let store = strata::store::Store::open(env.root()).expect("store");
    store
        .conn()
        .query_row(
            "SELECT count(*) FROM endpoints WHERE ip IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count")
}

/// The test's busybox httpd on the host side, serving `index.html`;
/// killed (by pid) on drop.
pub struct HostHttpd {
    child: Child,
    pub port: u16,
}

impl HostHttpd {
    /// Serves `text` on `ip` (`0.0.0.0`: every address of the test's
    /// namespace) at a free port; returns once it answers.
    pub fn start(env: &Env, ip: &str, text: &str) -> HostHttpd {
        let addr: IpAddr = ip.parse().expect("address");
        let www = env
            .root()
            .join(format!("www-{}", crate::harness::rand_suffix()));
        std::fs::create_dir_all(&www).expect("mkdir www");
        std::fs::write(www.join("index.html"), text).expect("index");
        let port = free_port_on(addr);
        let child = Command::new(busybox())
            .args(["httpd", "-f", "-p", &format!("{ip}:{port}"), "-h"])
            .arg(&www)
            .stdin(Stdio::null())
            .spawn()
            .expect("busybox httpd");
        let httpd = HostHttpd { child, port };
        let probe = if addr.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            addr
        };
        assert!(
            eventually(5, || TcpStream::connect((probe, port)).is_ok()),
            "httpd did not start on {ip}:{port}"
        );
        httpd
    }
}

impl Drop for HostHttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
