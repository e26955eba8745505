//! Authentication and transport security against the real registry:
//! htpasswd Basic auth with login/logout, Bearer tokens from a test
//! issuer, TLS with a CA the test makes, and redirects that must not
//! carry credentials to another host.

use std::os::unix::fs::PermissionsExt;

use crate::registry::harness::{htpasswd, Auth, Registry, Strata, TestCa};
use crate::registry::images::{
    compress, push_test_image, skopeo_push, test_layers, Compression, Layout,
};
use crate::registry::proxy::{Fault, Proxy, Rule};
use crate::registry::token::TokenServer;
use crate::require_tools;
use strata::digest::Digest;

/// Pushes a test image with credentials through skopeo.
fn push_with_creds(dest: &str, salt: u64, creds: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let (descriptor, diff_ids) = layout.put_image(&test_layers(salt), Compression::Gzip, "amd64");
    layout.tag("t", descriptor);
    skopeo_push(&layout, "t", dest, None, false, Some(creds));
    diff_ids
}

#[test]
fn basic_auth_login_pull_push_logout() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(
        Auth::Htpasswd(htpasswd(dir.path(), "alice", "s3cret")),
        None,
    );
    let host = registry.host();
    let reference = format!("{host}/private/app:1");
    let diff_ids = push_with_creds(&reference, 40, "alice:s3cret");
    let strata = Strata::new();

    let denied = strata.fails(&["pull", &reference]);
    assert!(denied.contains("unauthorized"), "{denied}");
    let wrong = strata.fails(&["login", "-u", "alice", "-p", "nope", &host]);
    assert!(wrong.contains("unauthorized"), "{wrong}");
    assert!(
        !strata.docker_config().exists(),
        "failed login wrote credentials"
    );

    let (ok, out, err) = strata.run_with_stdin(
        &["login", "-u", "alice", "--password-stdin", &host],
        "s3cret\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "Login Succeeded\n");
    let mode = std::fs::metadata(strata.docker_config())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(strata.docker_config()).unwrap()).unwrap();
    assert_eq!(config["auths"][&host]["auth"], "YWxpY2U6czNjcmV0");

    strata.ok(&["pull", &reference]);
    assert_eq!(strata.diff_ids(&reference), diff_ids);
    let copy = format!("{host}/private/copy:1");
    strata.ok(&["tag", &reference, &copy]);
    let pushed = strata.ok(&["push", &copy]);
    assert!(pushed.contains("Mounted from private/app"), "{pushed}");

    assert_eq!(
        strata.ok(&["logout", &host]),
        format!("Removing login credentials for {host}\n")
    );
    assert_eq!(
        strata.ok(&["logout", &host]),
        format!("Not logged in to {host}\n")
    );
    let after = strata.fails(&["pull", &copy]);
    assert!(after.contains("unauthorized"), "{after}");
    strata.assert_fsck_clean();
}

#[test]
fn bearer_tokens_from_a_token_issuer() {
    require_tools!("docker-registry", "skopeo", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(dir.path(), "bob", "pw");
    let registry = Registry::start(
        Auth::Token {
            realm: tokens.realm(),
            rootcertbundle: tokens.cert.clone(),
        },
        None,
    );
    let host = registry.host();
    let reference = format!("{host}/tok/app:1");
    let diff_ids = push_with_creds(&reference, 50, "bob:pw");
    let strata = Strata::new();

    // Anonymous tokens may pull, and one token serves the whole pull.
    let before = tokens.issued.load(std::sync::atomic::Ordering::Relaxed);
    strata.ok(&["pull", &reference]);
    let used = tokens.issued.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!((1..=2).contains(&used), "{used} tokens for one pull");
    assert_eq!(strata.diff_ids(&reference), diff_ids);

    // ... but not push.
    let target = format!("{host}/tok/pushed:1");
    strata.ok(&["tag", &reference, &target]);
    let refused = strata.fails(&["push", &target]);
    assert!(
        refused.contains("unauthorized") || refused.contains("denied"),
        "{refused}"
    );

    let wrong = strata.fails(&["login", "-u", "bob", "-p", "bad", &host]);
    assert!(wrong.contains("unauthorized"), "{wrong}");
    assert_eq!(
        strata.ok(&["login", "-u", "bob", "-p", "pw", &host]),
        "Login Succeeded\n"
    );
    let pushed = strata.ok(&["push", &target]);
    assert!(
        pushed.contains("v1") || pushed.contains("1: digest: sha256:"),
        "{pushed}"
    );
    let other = Strata::new();
    other.ok(&["pull", &target]);
    assert_eq!(other.diff_ids(&target), diff_ids);
}

#[test]
fn tls_with_a_test_ca() {
    require_tools!("docker-registry", "skopeo", "openssl");
    let ca = TestCa::new();
    let registry = Registry::start(Auth::None, Some((&ca.cert(), &ca.key())));
    let host = registry.host();
    let reference = format!("{host}/secure/app:1");
    let diff_ids = push_test_image(&reference, 60, Compression::Gzip, None);
    let strata = Strata::new();

    let unknown = strata.fails(&["pull", &reference]);
    assert!(
        unknown.contains("TLS") && unknown.to_lowercase().contains("certificate"),
        "{unknown}"
    );
    assert_eq!(strata.image_count(), 0);

    strata.ok(&["pull", "--tls-verify=false", &reference]);
    assert_eq!(strata.diff_ids(&reference), diff_ids);

    let certs = strata.certs_dir().join(&host);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(ca.ca(), certs.join("ca.crt")).unwrap();
    let verified = Strata { dir: strata.dir };
    let out = verified.ok(&["pull", &reference]);
    assert!(out.contains("Image is up to date"), "{out}");
    let target = format!("{host}/secure/copy:1");
    verified.ok(&["tag", &reference, &target]);
    verified.ok(&["push", &target]);
}

#[test]
fn client_certificates_from_certs_d() {
    require_tools!("docker-registry", "openssl");
    let ca = TestCa::new();
    let registry =
        Registry::start_with_client_ca(Auth::None, Some((&ca.cert(), &ca.key())), Some(&ca.ca()));
    let host = registry.host();
    let strata = Strata::new();
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs.tar");
    std::fs::write(&rootfs, &crate::registry::images::test_layers(80)[1]).unwrap();
    let name = format!("{host}/mtls/img:1");
    strata.ok(&["import", rootfs.to_str().unwrap(), &name]);
    let certs = strata.certs_dir().join(&host);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(ca.ca(), certs.join("ca.crt")).unwrap();

    // The CA alone: the registry wants a client certificate.
    let refused = strata.fails(&["push", &name]);
    assert!(refused.contains("TLS"), "{refused}");
    // A key without its certificate is refused before any connection.
    let (cert, key) = ca.client();
    std::fs::copy(&key, certs.join("client.key")).unwrap();
    let missing = strata.fails(&["push", &name]);
    assert!(missing.contains("missing client certificate"), "{missing}");
    // The pair, as Docker reads it.
    std::fs::copy(&cert, certs.join("client.cert")).unwrap();
    strata.ok(&["push", &name]);

    let other = Strata::new();
    let other_certs = other.certs_dir().join(&host);
    std::fs::create_dir_all(&other_certs).unwrap();
    std::fs::copy(ca.ca(), other_certs.join("ca.crt")).unwrap();
    other.fails(&["pull", &name]);
    std::fs::copy(&cert, other_certs.join("client.cert")).unwrap();
    std::fs::copy(&key, other_certs.join("client.key")).unwrap();
    other.ok(&["pull", &name]);
    other.assert_fsck_clean();
}

#[test]
fn redirects_to_another_host_carry_no_credentials() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(Auth::Htpasswd(htpasswd(dir.path(), "carol", "pw")), None);
    let basic = "Basic Y2Fyb2w6cHc="; // carol:pw
                                      // The "CDN": another loopback address with its own access to the registry.
    let cdn = Proxy::start_on(
        "127.0.0.2",
        registry.port,
        Vec::new(),
        Some(basic.to_string()),
    );
    let layer = Digest::of(&compress(&test_layers(70)[1], Compression::Gzip));
    let front = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{layer}"),
            Fault::Redirect(format!("http://{}", cdn.host())),
            usize::MAX,
        )],
    );
    push_with_creds(&format!("{}/cdn/app:1", registry.host()), 70, "carol:pw");
    let strata = Strata::new();
    strata.ok(&["login", "-u", "carol", "-p", "pw", &front.host()]);
    strata.ok(&["pull", &format!("{}/cdn/app:1", front.host())]);
    assert!(front.faults_applied() >= 1, "the layer was not redirected");
    let seen = cdn.authorizations();
    assert!(!seen.is_empty(), "nothing reached the other host");
    assert!(
        seen.iter().all(|(_, auth)| auth.is_none()),
        "credentials followed the redirect: {seen:?}"
    );
    assert!(front
        .authorizations()
        .iter()
        .any(|(_, auth)| auth.as_deref() == Some(basic)));
    strata.assert_fsck_clean();
}

/// Issue 16: an HTTPS registry whose 401 names a plain-HTTP token realm
/// must not get the user's Basic credentials sent there in cleartext;
/// with `--tls-verify=false` (the user marked it insecure) they go.
#[test]
fn credentials_never_go_to_a_plain_http_realm_of_an_https_registry() {
    require_tools!("docker-registry", "skopeo", "openssl");
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(dir.path(), "bob", "pw");
    assert!(tokens.realm().starts_with("http://"));
    let registry = Registry::start(
        Auth::Token {
            realm: tokens.realm(),
            rootcertbundle: tokens.cert.clone(),
        },
        Some((&ca.cert(), &ca.key())),
    );
    let host = registry.host();
    let reference = format!("{host}/realm/app:1");
    push_with_creds(&reference, 163, "bob:pw");
    let strata = Strata::new();
    let certs = strata.certs_dir().join(&host);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(ca.ca(), certs.join("ca.crt")).unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "bob:pw");
    std::fs::write(
        strata.docker_config(),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    let seen = || {
        tokens
            .credentials_seen
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = seen();

    let err = strata.fails(&["pull", &reference]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&tokens.realm()) && err.contains("plain HTTP"),
        "{err}"
    );
    let login = strata.fails(&["login", "-u", "bob", "-p", "pw", &host]);
    assert!(login.contains("plain HTTP"), "{login}");
    assert_eq!(seen(), before, "credentials reached the plain-HTTP realm");
    assert_eq!(strata.image_count(), 0);

    strata.ok(&["pull", "--tls-verify=false", &reference]);
    assert!(seen() > before, "--tls-verify=false sends them");
}
