//! Docker 20.10 as the oracle of networking: the same runs (default
//! bridge, a user network with `--network-alias`, `--link` to a
//! container whose image EXPOSEs ports, `-p 127.0.0.1:H:C` and `-P`,
//! `--add-host`, `--dns*`, `--hostname`/`--domainname`) in strata and in
//! a dockerd of the test's own (`dockerd.rs`, in a network namespace of
//! its own; strata in the test's). Compared after normalising IDs and
//! the `-P` host port: `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`,
//! link variables, `port`, the `ps` PORTS column, `inspect`'s
//! NetworkSettings (keys, value types and values) and
//! HostConfig.PortBindings/NetworkMode, and `network inspect`.
//!
//! Both bind a port published on every address on `0.0.0.0` and `[::]`.
//! The docker client on PATH may be newer than the daemon (28.x writes
//! `[::]:P`, Docker 20.10's client and strata `:::P`): brackets are
//! dropped before comparing. Docker 20.10 picks the IPv6 port of `-P`
//! apart from the IPv4 one, strata takes the same port for both: every
//! port `-P` chose becomes `<P>`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::dockerd::Docker;
use crate::harness::Env;

enum Engine<'a> {
    Strata(&'a Env),
    Docker(&'a Docker),
}

impl Engine<'_> {
    fn ok(&self, args: &[&str]) -> String {
        match self {
            Engine::Strata(env) => env.ok(args),
            Engine::Docker(d) => d.ok(args),
        }
    }

    fn json(&self, args: &[&str]) -> Value {
        let v: Value = serde_json::from_str(&self.ok(args)).expect("json");
        v[0].clone()
    }
}

/// What one engine shows for the runs, as text, and its `inspect`
/// objects.
struct Transcript {
    text: String,
    inspect: BTreeMap<&'static str, Value>,
}

const CAT: &str = "cat /etc/hosts /etc/resolv.conf /etc/hostname";

fn transcript(e: &Engine, host_port: u16) -> Transcript {
    let mut text = String::new();
    let mut section = |title: &str, out: String| {
        text.push_str(&format!("== {title}\n{out}"));
    };
    e.ok(&["network", "create", "appnet"]);
    e.ok(&["run", "-d", "--name", "db", "db", "sleep", "1000"]);
    let spec = format!("127.0.0.1:{host_port}:80");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "appnet",
        "--network-alias",
        "backend",
        "-p",
        &spec,
        "-P",
        "--expose",
        "90",
        "bb",
        "sleep",
        "1000",
    ]);
    section(
        "default bridge",
        e.ok(&["run", "--rm", "bb", "sh", "-c", CAT]),
    );
    section(
        "user network",
        e.ok(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            "--network-alias",
            "x",
            "bb",
            "sh",
            "-c",
            CAT,
        ]),
    );
    section(
        "links",
        e.ok(&[
            "run",
            "--rm",
            "--name",
            "app",
            "--link",
            "db:db",
            "--link",
            "db:other",
            "bb",
            "sh",
            "-c",
            "cat /etc/hosts; env | sort",
        ]),
    );
    section(
        "add-host, dns, hostname, domainname",
        e.ok(&[
            "run",
            "--rm",
            "--add-host",
            "foo:1.2.3.4",
            "--add-host",
            "gw:host-gateway",
            "--dns",
            "9.9.9.9",
            "--dns-search",
            "example.com",
            "--dns-option",
            "ndots:2",
            "--hostname",
            "hh",
            "--domainname",
            "example.org",
            "bb",
            "sh",
            "-c",
            CAT,
        ]),
    );
    section(
        "user network, dns, hostname",
        e.ok(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            "--dns",
            "9.9.9.9",
            "--hostname",
            "h2",
            "bb",
            "sh",
            "-c",
            CAT,
        ]),
    );
    section("port api", e.ok(&["port", "api"]));
    section("port api 80", e.ok(&["port", "api", "80"]));
    section("port api 90/tcp", e.ok(&["port", "api", "90/tcp"]));
    section("port db", e.ok(&["port", "db"]));
    section(
        "ps",
        e.ok(&["ps", "--format", "{{.Names}}|{{.Ports}}|{{.Networks}}"]),
    );
    let mut inspect = BTreeMap::new();
    inspect.insert("api", e.json(&["inspect", "api"]));
    inspect.insert("db", e.json(&["inspect", "db"]));
    inspect.insert("appnet", e.json(&["network", "inspect", "appnet"]));
    inspect.insert("bridge", e.json(&["network", "inspect", "bridge"]));
    e.ok(&["rm", "-f", "api", "db"]);
    e.ok(&["network", "rm", "appnet"]);
    Transcript { text, inspect }
}

/// Replaces IDs (64 or 12 hex digits) by `<ID1>`, `<ID2>`, ... in order
/// of appearance, the `-P` host ports by `<P>`, and writes IPv6 host
/// addresses as Docker 20.10's client does (`:::P`, not `[::]:P`).
fn normalise(text: &str, publish_all_ports: &[String]) -> String {
    let text = sort_link_entries(text);
    let long = regex::Regex::new(r"\b([0-9a-f]{12})[0-9a-f]{52}\b").expect("regex");
    let text = long.replace_all(&text, "$1");
    let short = regex::Regex::new(r"\b[0-9a-f]{12}\b").expect("regex");
    let mut ids: Vec<String> = Vec::new();
    let text = short.replace_all(&text, |c: &regex::Captures| {
        let id = c[0].to_string();
        let n = ids.iter().position(|i| *i == id).unwrap_or_else(|| {
            ids.push(id);
            ids.len() - 1
        });
        format!("<ID{}>", n + 1)
    });
    let v6 = regex::Regex::new(r"\[([0-9a-f:]*)\]:(\d+)").expect("regex");
    let mut text = v6.replace_all(&text, "$1:$2").into_owned();
    for p in publish_all_ports {
        let port = regex::Regex::new(&format!(r"\b{p}\b")).expect("regex");
        text = port.replace_all(&text, "<P>").into_owned();
    }
    text
}

/// Docker 20.10 writes the `/etc/hosts` lines of several `--link`s to
/// one container in its map's order, which changes from run to run:
/// consecutive hosts lines for the same address are sorted, before the
/// IDs are numbered by their first appearance.
fn sort_link_entries(text: &str) -> String {
    let address = |line: &str| {
        line.split_once('\t')
            .map(|(a, _)| a.to_string())
            .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        let Some(a) = address(lines[i]) else {
            out.push_str(lines[i]);
            i += 1;
            continue;
        };
        let end = (i..lines.len())
            .find(|&j| address(lines[j]).as_deref() != Some(a.as_str()))
            .unwrap_or(lines.len());
        let mut run = lines[i..end].to_vec();
        run.sort_unstable();
        run.into_iter().for_each(|l| out.push_str(l));
        i = end;
    }
    out
}

/// Scalars by their JSON type, arrays by their first element, objects
/// key by key: the shape two engines' objects must share.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// The parts of a container's `inspect` the network owns, with IDs,
/// paths and Docker's IPv6 bindings made comparable.
fn network_part(v: &Value, publish_all_ports: &[String]) -> Value {
    let mut settings = v["NetworkSettings"].clone();
    for key in ["SandboxID", "SandboxKey", "EndpointID"] {
        if settings[key].as_str().is_some_and(|s| !s.is_empty()) {
            settings[key] = json!("<set>");
        }
    }
    if let Some(networks) = settings["Networks"].as_object_mut() {
        for n in networks.values_mut() {
            for key in ["NetworkID", "EndpointID"] {
                if n[key].as_str().is_some_and(|s| !s.is_empty()) {
                    n[key] = json!("<set>");
                }
            }
        }
    }
    if let Some(ports) = settings["Ports"].as_object_mut() {
        for bindings in ports.values_mut() {
            if let Some(list) = bindings.as_array_mut() {
                for b in list {
                    if publish_all_ports.iter().any(|p| b["HostPort"] == **p) {
                        b["HostPort"] = json!("<P>");
                    }
                }
            }
        }
    }
    let text = serde_json::to_string(&json!({
        "NetworkSettings": settings,
        "PortBindings": v["HostConfig"]["PortBindings"],
        "PublishAllPorts": v["HostConfig"]["PublishAllPorts"],
        "NetworkMode": v["HostConfig"]["NetworkMode"],
    }))
    .expect("json");
    serde_json::from_str(&normalise(&text, &[])).expect("json")
}

/// A `network inspect` object with its IDs, times and the bridge's
/// name made comparable; Containers as a list.
fn network_inspect_part(v: &Value) -> Value {
    let mut v = v.clone();
    v["Id"] = json!("<id>");
    v["Created"] = json!("<time>");
    let containers: Vec<Value> = v["Containers"]
        .as_object()
        .map(|o| {
            o.values()
                .map(|c| {
                    let mut c = c.clone();
                    c["EndpointID"] = json!("<set>");
                    c
                })
                .collect()
        })
        .unwrap_or_default();
    v["Containers"] = json!(containers);
    if let Some(name) = v["Options"].get_mut("com.docker.network.bridge.name") {
        *name = json!("<bridge>");
    }
    v
}

fn assert_same(what: &str, docker: &Value, strata: &Value) {
    assert_eq!(
        docker,
        strata,
        "{what}: Docker (left) and strata (right) differ:\n{}\n{}",
        serde_json::to_string_pretty(docker).unwrap_or_default(),
        serde_json::to_string_pretty(strata).unwrap_or_default()
    );
}

#[test]
fn docker_writes_the_same_files_ports_and_inspect() {
    let env = crate::env_or_skip!();
    let Some(docker) = Docker::start(&env, &[]) else {
        return;
    };
    let tar = env.build_image_tar(&[]);
    docker.ok(&["import", tar.to_str().expect("utf8"), "bb:latest"]);
    let ctx = env.root().join("ctx-db");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(ctx.join("Dockerfile"), "FROM bb\nEXPOSE 5432 53/udp\n").expect("Dockerfile");
    let ctx = ctx.to_str().expect("utf8");
    docker.ok(&["build", "-q", "-t", "db:latest", ctx]);
    env.ok(&["build", "-q", "-t", "db:latest", ctx]);
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();

    let engines = [Engine::Docker(&docker), Engine::Strata(&env)];
    let [d, s] = engines.map(|e| transcript(&e, host_port));
    // The host ports -P chose (IPv4 and IPv6), per engine.
    let p = |t: &Transcript| -> Vec<String> {
        let bound = t.inspect["api"]["NetworkSettings"]["Ports"]["90/tcp"]
            .as_array()
            .expect("90/tcp bound")
            .iter()
            .map(|b| b["HostPort"].as_str().expect("HostPort").to_string())
            .collect::<Vec<_>>();
        assert!(!bound.is_empty(), "90/tcp bound");
        bound
    };
    let (dp, sp) = (p(&d), p(&s));
    let (dt, st) = (normalise(&d.text, &dp), normalise(&s.text, &sp));
    let first = dt
        .lines()
        .zip(st.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(dt.lines().count().min(st.lines().count()));
    assert_eq!(
        dt,
        st,
        "Docker (left) and strata (right) differ from line {}: {:?} vs {:?}",
        first + 1,
        dt.lines().nth(first),
        st.lines().nth(first)
    );

    for name in ["api", "db"] {
        let (dv, sv) = (
            network_part(&d.inspect[name], &dp),
            network_part(&s.inspect[name], &sp),
        );
        assert_same(&format!("inspect {name} (shape)"), &shape(&dv), &shape(&sv));
        assert_same(&format!("inspect {name}"), &dv, &sv);
    }
    for name in ["appnet", "bridge"] {
        let (dv, sv) = (
            network_inspect_part(&d.inspect[name]),
            network_inspect_part(&s.inspect[name]),
        );
        assert_same(
            &format!("network inspect {name} (shape)"),
            &shape(&dv),
            &shape(&sv),
        );
        assert_same(&format!("network inspect {name}"), &dv, &sv);
    }
}

#[test]
fn link_entries_compare_in_either_order() {
    let head = "127.0.0.1\tlocalhost\n";
    let a = format!("{head}172.17.0.2\tdb abc\n172.17.0.2\tother abc db\n172.17.0.3\tme\n");
    let b = format!("{head}172.17.0.2\tother abc db\n172.17.0.2\tdb abc\n172.17.0.3\tme\n");
    assert_eq!(sort_link_entries(&a), sort_link_entries(&b));
    // Lines for different addresses keep their order.
    let c = format!("{head}172.17.0.3\tme\n172.17.0.2\tdb abc\n");
    assert_eq!(sort_link_entries(&c), c);
}
