//! RUN's network: Docker's builder runs RUN steps on the default bridge
//! (`--network default`, also `bridge`), or with `--network host|none`,
//! and `RUN --network=default|host|none` per step. The RUN's endpoint
//! (veth, address lease) goes with its container. The test runs in a
//! network namespace of its own (`harness::private_network`, from
//! `Env::new`): a busybox httpd of the test's (`netns::HostHttpd`),
//! listening on every address of that namespace, stands for a server on
//! the host.

use crate::harness::{eventually, Env};
use crate::netns::{leases, links, HostHttpd};
use crate::{assert_clean, assert_ok, build, context, env_or_skip};

/// A shell function for RUNs: `get HOST` prints the last line of the
/// test's page from HOST:$PORT, or `unreached` (busybox's nc: its static
/// wget crashes in some containers).
const GET: &str = "get() { printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 $1 $PORT \
    | busybox tail -n 1 | busybox grep . || echo unreached; }; ";

/// What a RUN saw: the gateway it had (none without a default route),
/// and whether the test's httpd answered there and on the loopback.
fn probe_step() -> String {
    format!(
        "RUN {GET} gw=$(busybox ip route | busybox awk '/^default/ {{print $3}}'); \
         get ${{gw:-0.0.0.0}} > /via-gateway; get 127.0.0.1 > /via-loopback; echo \"gw=$gw\" > /gateway"
    )
}

fn probe(env: &Env, tag: &str) -> (String, String, String) {
    let read = |f: &str| {
        env.ok(&["run", "--rm", "--network", "none", tag, "cat", f])
            .trim()
            .to_string()
    };
    (
        read("/gateway"),
        read("/via-gateway"),
        read("/via-loopback"),
    )
}

#[test]
fn run_steps_use_the_default_bridge_unless_told_otherwise() {
    let env = env_or_skip!();
    let httpd = HostHttpd::start(&env, "0.0.0.0", "hello-from-host");
    let port = httpd.port;
    let dir = context(&env, &format!("FROM bb\nARG PORT\n{}\n", probe_step()), &[]);
    let port_arg = format!("PORT={port}");
    let cases: [(&str, &[&str]); 4] = [
        ("net-default", &[]),
        ("net-bridge", &["--network", "bridge"]),
        ("net-none", &["--network", "none"]),
        ("net-host", &["--network", "host"]),
    ];
    for (tag, flags) in cases {
        let mut args = vec!["-t", tag, "--build-arg", &port_arg];
        args.extend_from_slice(flags);
        assert_ok(&build(&env, &dir, &args));
    }
    // The default (and bridge): a namespace of its own behind the default
    // bridge's gateway; the host's server is reachable there, its
    // loopback is the container's own.
    for tag in ["net-default", "net-bridge"] {
        assert_eq!(
            probe(&env, tag),
            (
                "gw=172.17.0.1".to_string(),
                "hello-from-host".to_string(),
                "unreached".to_string()
            ),
            "{tag}"
        );
    }
    // none: loopback only.
    let (gw, via_gateway, via_loopback) = probe(&env, "net-none");
    assert_eq!(
        (gw.as_str(), via_gateway.as_str(), via_loopback.as_str()),
        ("gw=", "unreached", "unreached")
    );
    // host: the host's (here the test's) namespace, loopback included.
    let (_, _, via_loopback) = probe(&env, "net-host");
    assert_eq!(via_loopback, "hello-from-host");
    // Nothing of the RUNs' networking is left.
    assert!(
        eventually(5, || links("veth").is_empty()),
        "{:?}",
        links("veth")
    );
    assert_eq!(leases(&env), 0);
    assert_clean(&env);
}

#[test]
fn run_network_flag_overrides_the_builds_network() {
    let env = env_or_skip!();
    let httpd = HostHttpd::start(&env, "0.0.0.0", "hello-from-host");
    let port = httpd.port;
    let dir = context(
        &env,
        &format!(
            "FROM bb\nARG PORT\n\
             RUN --network=none {GET} get 172.17.0.1 > /none\n\
             RUN --network=host {GET} get 127.0.0.1 > /host\n\
             RUN --network=default {GET} get 172.17.0.1 > /default\n"
        ),
        &[],
    );
    let port_arg = format!("PORT={port}");
    assert_ok(&build(
        &env,
        &dir,
        &["-t", "per-step", "--build-arg", &port_arg],
    ));
    let cat = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "per-step",
        "cat",
        "/none",
        "/host",
        "/default",
    ]);
    assert_eq!(cat, "unreached\nhello-from-host\nhello-from-host\n");
    // An unknown RUN network is an error naming the line.
    let bad = context(&env, "FROM bb\nRUN --network=bogus true\n", &[]);
    let out = build(&env, &bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Dockerfile:2") && err.contains("--network=bogus"),
        "{err}"
    );
    assert!(
        eventually(5, || links("veth").is_empty()),
        "{:?}",
        links("veth")
    );
    assert_eq!(leases(&env), 0);
    assert_clean(&env);
}
