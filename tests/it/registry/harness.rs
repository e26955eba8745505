//! Processes and directories the tests share: the registry, the strata
//! binary with its own root, and tool checks.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Returns false (after saying why) when a tool is missing outside CI;
/// panics in CI, where every test must run.
pub fn tools_available(tools: &[&str]) -> bool {
    // busybox is always needed: the test images are built from it.
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .chain(["busybox"])
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "missing {}: install with `apt-get install -y docker-registry skopeo openssl busybox-static`",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// Skips the calling test (returns) unless the tools are there.
#[macro_export]
macro_rules! require_tools {
    ($($tool:expr),*) => {
        if !$crate::registry::harness::tools_available(&[$($tool),*]) {
            return;
        }
    };
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command and panics with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// How the registry authenticates.
pub enum Auth {
    None,
    /// An htpasswd file.
    Htpasswd(PathBuf),
    /// Token auth: realm URL, and the certificate bundle the tokens are checked against.
    Token {
        realm: String,
        rootcertbundle: PathBuf,
    },
}

pub const TOKEN_SERVICE: &str = "strata-test-registry";
pub const TOKEN_ISSUER: &str = "strata-test-issuer";

/// A running `docker-registry`, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(auth: Auth, tls: Option<(&Path, &Path)>) -> Registry {
        Self::start_with_client_ca(auth, tls, None)
    }

    /// Like `start`; with `client_ca`, TLS clients must show a certificate it signed.
    pub fn start_with_client_ca(
        auth: Auth,
        tls: Option<(&Path, &Path)>,
        client_ca: Option<&Path>,
    ) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((cert, key)) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            if let Some(ca) = client_ca {
                config.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
            }
        }
        match auth {
            Auth::None => {}
            Auth::Htpasswd(path) => {
                config.push_str(&format!("auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n", path.display()))
            }
            Auth::Token { realm, rootcertbundle } => config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                rootcertbundle.display()
            )),
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The strata binary with its own store root, Docker config and certs.d.
pub struct Strata {
    pub dir: tempfile::TempDir,
}

impl Strata {
    pub fn new() -> Strata {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["root", "docker", "certs.d"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Strata { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker/config.json")
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("--root")
            .arg(self.root())
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("STRATA_CERTS_D", self.certs_dir())
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs strata; panics with its output unless it succeeds. Returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs strata, expecting failure. Returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            !out.status.success(),
            "strata {args:?} succeeded but should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// `strata fsck` must be clean.
    /// Nothing is left in the store's tmp/ (see
    /// [`crate::common::assert_no_staging_left`]).
    pub fn assert_no_staging_left(&self) {
        crate::common::assert_no_staging_left(&self.root());
    }

    pub fn assert_fsck_clean(&self) {
        let out = self.ok(&["fsck"]);
        assert!(
            out.contains("clean") && !out.contains("DAMAGED"),
            "fsck: {out}"
        );
    }

    /// The diff_ids of a stored image, from its config.
    pub fn diff_ids(&self, name: &str) -> Vec<String> {
        let store = strata::store::Store::open(&self.root()).unwrap();
        let id = strata::image::resolve_image(&store, name).unwrap();
        let (config, _) = strata::image::image_config(&store, &id).unwrap();
        config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    /// The names `images` lists.
    pub fn image_count(&self) -> usize {
        let store = strata::store::Store::open(&self.root()).unwrap();
        strata::image::list_images(&store).unwrap().len()
    }
}

impl Strata {
    /// Runs strata with `input` on stdin; returns (success, stdout, stderr).
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost, made with openssl.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            run(Command::new("openssl").current_dir(d).args(args));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=strata test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ]);
        TestCa { dir }
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
    /// Issues a client certificate signed by the CA: (`.cert`, `.key`).
    pub fn client(&self) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        let openssl = |args: &[&str]| {
            run(Command::new("openssl").current_dir(d).args(args));
        };
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=strata client",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ]);
        std::fs::write(
            d.join("client.cnf"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.cnf",
            "-out",
            "client.cert",
        ]);
        (d.join("client.cert"), d.join("client.key"))
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// An htpasswd file with one bcrypt line.
pub fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let hash = bcrypt::hash_with_result(password, 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("{user}:{hash}\n")).unwrap();
    path
}
