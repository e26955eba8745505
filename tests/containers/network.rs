//! Networking: the default bridge, published ports, user-defined
//! networks and their DNS, links, internal networks, shared namespaces,
//! and cleanup. Each test runs in a network namespace of its own (see
//! `harness::private_network`), so nothing here touches the machine's
//! interfaces or rules.

use std::net::TcpListener;
use std::process::{Command, Stdio};

use crate::harness::{busybox, eventually, rand_suffix, stderr, stdout, Env};
use crate::netns::{free_port, leases, links, HostHttpd};

/// `wget -qO- URL` from the test's side (the "host").
fn host_wget(url: &str) -> Option<String> {
    let out = Command::new(busybox())
        .args(["wget", "-q", "-O-", url])
        .output()
        .expect("busybox wget");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A detached busybox httpd serving `text` on port 80.
fn run_httpd(env: &Env, extra: &[&str], text: &str) -> String {
    let script = format!(
        "mkdir -p /www && echo {text} > /www/index.html && exec busybox httpd -f -p 80 -h /www"
    );
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["bb", "sh", "-c", &script]);
    env.ok(&args).trim().to_string()
}

/// The DNAT rules of strata's table.
fn dnat_rules() -> usize {
    let out = Command::new("nft")
        .args(["list", "table", "ip", "strata"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout)
        .matches("dnat to")
        .count()
}

/// Asserts that no container of the test holds anything of the
/// network: no address lease, no DNAT rule, no veth.
fn assert_network_released(env: &Env) {
    assert_eq!(leases(env), 0, "leases left");
    assert_eq!(dnat_rules(), 0, "DNAT rules left");
    assert!(
        eventually(3, || links("veth").is_empty()),
        "veths left: {:?}",
        links("veth")
    );
}

#[test]
fn default_bridge_gives_an_address_route_and_hostname() {
    let env = crate::env_or_skip!();
    let out = env.ok(&[
        "run",
        "--name",
        "b1",
        "bb",
        "sh",
        "-c",
        "hostname; cat /proc/net/route; cat /etc/hosts; ls /sys/class/net",
    ]);
    let id = env.container("b1").id;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], &id[..12], "{out}");
    // A default route (destination 00000000) through eth0.
    assert!(
        out.lines().any(|l| l.starts_with("eth0\t00000000")),
        "{out}"
    );
    assert!(out.contains(&format!("172.17.0.2\t{}", &id[..12])), "{out}");
    assert!(out.contains("ff02::1\tip6-allnodes"), "{out}");
    // The bridge exists in the test's namespace, the veth went with the
    // container's.
    assert_eq!(links("strata0"), vec!["strata0"]);
    assert!(
        eventually(3, || links("veth").is_empty()),
        "{:?}",
        links("veth")
    );
    assert_eq!(leases(&env), 0);
    let none = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bb",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(none.trim(), "lo");
}

#[test]
fn published_port_answers_from_loopback_and_host_address() {
    let env = crate::env_or_skip!();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    run_httpd(
        &env,
        &["--name", "web", "-p", &spec, "-p", "80"],
        "hello-web",
    );
    let url = format!("http://127.0.0.1:{port}/");
    assert!(
        eventually(5, || host_wget(&url)
            .is_some_and(|b| b.contains("hello-web"))),
        "no answer on {url}"
    );
    // The second binding got a free port, on every address: reachable
    // through the bridge's address (DNAT from the host's output chain).
    let ports = env.ok(&["port", "web"]);
    let any = ports
        .lines()
        .find(|l| l.starts_with("80/tcp -> 0.0.0.0:"))
        .unwrap_or_else(|| panic!("{ports}"));
    let any_port = any.rsplit(':').next().unwrap().to_string();
    assert!(
        ports.contains(&format!("80/tcp -> 127.0.0.1:{port}")),
        "{ports}"
    );
    let gw = env.inspect("web")["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(gw, "172.17.0.1");
    let via_bridge = format!("http://{gw}:{any_port}/");
    assert!(
        host_wget(&via_bridge).is_some_and(|b| b.contains("hello-web")),
        "{via_bridge}"
    );
    // 127.0.0.1:PORT, 0.0.0.0:ANY and [::]:ANY (Docker binds IPv6 too).
    assert_eq!(env.ok(&["port", "web", "80/tcp"]).lines().count(), 3);
    let ps = env.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    // Another container reaches it through the host (hairpin).
    let other = env.run(&[
        "run",
        "--rm",
        "bb",
        "busybox",
        "wget",
        "-q",
        "-O-",
        &via_bridge,
    ]);
    assert!(stdout(&other).contains("hello-web"), "{}", stderr(&other));
    let v = env.inspect("web");
    assert_eq!(v["NetworkSettings"]["IPAddress"], "172.17.0.2");
    assert_eq!(v["NetworkSettings"]["MacAddress"], "02:42:ac:11:00:02");
    assert_eq!(
        v["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    env.ok(&["stop", "-t", "1", "web"]);
    assert!(
        host_wget(&url).is_none(),
        "the port must close with the container"
    );
    assert_eq!(dnat_rules(), 0);
    assert_eq!(env.ok(&["port", "web"]), "");
}

#[test]
fn publish_all_maps_exposed_ports() {
    let env = crate::env_or_skip!();
    run_httpd(&env, &["--name", "pa", "--expose", "80", "-P"], "hello-all");
    let ports = env.ok(&["port", "pa", "80"]);
    let port = ports.trim().rsplit(':').next().unwrap().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    assert!(
        eventually(5, || host_wget(&url)
            .is_some_and(|b| b.contains("hello-all"))),
        "{url}"
    );
    env.ok(&["rm", "-f", "pa"]);
}

#[test]
fn busy_host_port_is_refused_before_start() {
    let env = crate::env_or_skip!();
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().unwrap().port();
    let spec = format!("127.0.0.1:{port}:80");
    let out = env.run(&["run", "--name", "clash", "-p", &spec, "bb", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("port is already allocated"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert_eq!(
        env.container("clash").state.status,
        strata::container::Status::Created
    );
    assert_eq!(leases(&env), 0);
    assert!(links("veth").is_empty());
}

#[test]
fn user_network_resolves_names_aliases_and_connected_containers() {
    let env = crate::env_or_skip!();
    let id = env.ok(&["network", "create", "appnet"]).trim().to_string();
    assert_eq!(id.len(), 64);
    run_httpd(
        &env,
        &[
            "--name",
            "api",
            "--network",
            "appnet",
            "--network-alias",
            "backend",
        ],
        "from-api",
    );
    let api_id = env.container("api").id;
    let script = "cat /etc/resolv.conf; for n in api backend api.appnet SHORT; do busybox wget -q -O- http://$n/ || echo FAIL $n; done";
    let script = script.replace("SHORT", &api_id[..12]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "bb",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.contains("nameserver 127.0.0.11"), "{out}");
    assert!(out.contains("options ndots:0"), "{out}");
    assert_eq!(out.matches("from-api").count(), 4, "{out}");
    // Not resolvable from the default bridge.
    let out = env.run(&[
        "run",
        "--rm",
        "bb",
        "busybox",
        "wget",
        "-q",
        "-O-",
        "http://api/",
    ]);
    assert!(!out.status.success());
    // A running container connected later is reachable by its new alias
    // from the new network.
    run_httpd(&env, &["--name", "late"], "from-late");
    env.ok(&[
        "network",
        "connect",
        "--alias",
        "latecomer",
        "appnet",
        "late",
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "bb",
        "sh",
        "-c",
        "busybox wget -q -O- http://latecomer/; busybox wget -q -O- http://late/",
    ]);
    assert_eq!(out.matches("from-late").count(), 2, "{out}");
    let v = env.inspect("late");
    assert!(
        v["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
            .as_str()
            .unwrap()
            .starts_with("172.18."),
        "{v}"
    );
    let net = env.ok(&["network", "inspect", "appnet"]);
    assert!(net.contains(&api_id), "{net}");
    // In use: refused; after the containers go, removed with its bridge.
    let out = env.run(&["network", "rm", "appnet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has active endpoints"),
        "{}",
        stderr(&out)
    );
    env.ok(&["network", "disconnect", "appnet", "late"]);
    env.ok(&["rm", "-f", "api", "late"]);
    env.ok(&["network", "rm", "appnet"]);
    assert!(links("br-").is_empty(), "{:?}", links("br-"));
    let ls = env.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(ls, "bridge bridge\nhost host\nnone null\n");
}

#[test]
fn links_write_hosts_entries_and_variables() {
    let env = crate::env_or_skip!();
    env.ok(&[
        "run", "-d", "--name", "db", "--expose", "5432", "-e", "DBV=1", "bb", "sleep", "100",
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--name",
        "app",
        "--link",
        "db:dbalias",
        "--add-host",
        "foo:1.2.3.4",
        "bb",
        "sh",
        "-c",
        "cat /etc/hosts; env",
    ]);
    let db = env.container("db").id;
    assert!(out.contains("1.2.3.4\tfoo\n"), "{out}");
    assert!(
        out.contains(&format!("172.17.0.2\tdbalias {} db\n", &db[..12])),
        "{out}"
    );
    for var in [
        "DBALIAS_NAME=/app/dbalias",
        "DBALIAS_PORT=tcp://172.17.0.2:5432",
        "DBALIAS_PORT_5432_TCP_ADDR=172.17.0.2",
        "DBALIAS_PORT_5432_TCP_PROTO=tcp",
        "DBALIAS_ENV_DBV=1",
    ] {
        assert!(out.lines().any(|l| l == var), "{var} in {out}");
    }
    env.ok(&["rm", "-f", "db"]);
}

#[test]
fn internal_network_has_no_egress() {
    let env = crate::env_or_skip!();
    // An address of the "host" (the test's namespace) outside any
    // network, with a server on it.
    let status = Command::new("ip")
        .args(["link", "add", "up0", "type", "veth", "peer", "name", "up1"])
        .status()
        .unwrap();
    assert!(status.success());
    for args in [
        ["addr", "add", "10.199.0.1/24", "dev", "up0"].as_slice(),
        ["link", "set", "up0", "up"].as_slice(),
        ["link", "set", "up1", "up"].as_slice(),
    ] {
        assert!(Command::new("ip").args(args).status().unwrap().success());
    }
    let server = HostHttpd::start(&env, "10.199.0.1", "outside\n");
    let port = server.port;
    let url = format!("http://10.199.0.1:{port}/");
    assert!(eventually(3, || host_wget(&url).is_some()));
    let open = env.ok(&["run", "--rm", "bb", "busybox", "wget", "-q", "-O-", &url]);
    assert!(open.contains("outside"), "{open}");
    env.ok(&["network", "create", "--internal", "sealed"]);
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "sealed",
        "bb",
        "sh",
        "-c",
        &format!("cat /proc/net/route; busybox wget -q -O- {url}"),
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        !stdout(&out)
            .lines()
            .any(|l| l.starts_with("eth0\t00000000")),
        "no default route: {}",
        stdout(&out)
    );
    drop(server);
}

#[test]
fn container_mode_shares_the_namespace() {
    let env = crate::env_or_skip!();
    run_httpd(&env, &["--name", "owner"], "shared-ns");
    let owner = env.container("owner").id;
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "container:owner",
        "bb",
        "sh",
        "-c",
        "hostname; busybox wget -q -O- http://127.0.0.1/",
    ]);
    assert!(out.starts_with(&format!("{}\n", &owner[..12])), "{out}");
    assert!(out.contains("shared-ns"), "{out}");
    let out = env.run(&["run", "--rm", "--network", "container:nosuch", "bb", "true"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn killed_monitor_leaves_state_the_next_command_collects() {
    let env = crate::env_or_skip!();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    run_httpd(&env, &["--name", "victim", "-p", &spec, "-p", "80"], "v");
    assert_eq!(leases(&env), 1);
    assert_eq!(dnat_rules(), 2);
    let monitor = env.container("victim").state.monitor_pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(5, || !std::path::Path::new(&format!(
        "/proc/{monitor}"
    ))
    .exists()));
    // Any command that looks at the container collects it.
    env.ok(&["ps", "-a"]);
    assert_network_released(&env);
    // The port and the address are free again.
    run_httpd(&env, &["--name", "heir", "-p", &spec], "heir");
    assert_eq!(
        env.inspect("heir")["NetworkSettings"]["IPAddress"],
        "172.17.0.2"
    );
}

#[test]
fn run_stop_loop_leaks_nothing() {
    let env = crate::env_or_skip!();
    let port = free_port();
    let spec = format!("{port}:80");
    for i in 0..5 {
        let name = format!("loop{i}");
        run_httpd(&env, &["--name", &name, "-p", &spec], "x");
        env.ok(&["stop", "-t", "1", &name]);
        env.ok(&["rm", &name]);
        env.ok(&["run", "--rm", "bb", "true"]);
    }
    assert_network_released(&env);
    let store = strata::store::Store::open(env.root()).unwrap();
    let rows: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM endpoints", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "removed containers keep no endpoints");
}

/// A DNS message asking for the A records of `name`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new();
    m.set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
    m.to_vec().expect("query")
}

/// A record addresses of a DNS answer, and whether it was truncated.
fn dns_answer(bytes: &[u8]) -> (Vec<String>, bool) {
    let m = hickory_proto::op::Message::from_vec(bytes).expect("answer");
    let ips = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            hickory_proto::rr::RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    (ips, m.truncated())
}

fn dns_over_tcp(server: &str, query: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server).expect("connect over TCP");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut out = (query.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(query);
    s.write_all(&out).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("answer length");
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut answer).expect("answer");
    answer
}

/// A stand-in for the host's resolver on 127.0.0.1:53 of the test's
/// namespace: over UDP it answers every question truncated (TC, no
/// records), over TCP with `far.example` = 10.1.2.3; until `stop`.
fn truncating_upstream(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::{rdata::A, RData, Record};
    use std::sync::atomic::Ordering;
    let reply = |request: &[u8], truncated: bool| -> Vec<u8> {
        let q = Message::from_vec(request).expect("query");
        let mut m = Message::new();
        m.set_id(q.id())
            .set_message_type(MessageType::Response)
            .add_query(q.queries()[0].clone())
            .set_truncated(truncated);
        if !truncated {
            m.add_answer(Record::from_rdata(
                q.queries()[0].name().clone(),
                60,
                RData::A(A::new(10, 1, 2, 3)),
            ));
        }
        m.to_vec().expect("reply")
    };
    let udp = std::net::UdpSocket::bind("127.0.0.1:53").expect("bind udp 53");
    udp.set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:53").expect("bind tcp 53");
    tcp.set_nonblocking(true).unwrap();
    let stop_udp = stop.clone();
    let udp_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop_udp.load(Ordering::Relaxed) {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&reply(&buf[..n], true), from);
            }
        }
    });
    let tcp_thread = std::thread::spawn(move || {
        use std::io::{Read, Write};
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = tcp.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if s.read_exact(&mut q).is_err() {
                continue;
            }
            let r = reply(&q, false);
            let mut out = (r.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&r);
            let _ = s.write_all(&out);
        }
    });
    vec![udp_thread, tcp_thread]
}

#[test]
fn dns_server_answers_over_tcp_and_a_truncated_answer_is_retried_over_tcp() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let env = crate::env_or_skip!();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let upstream = truncating_upstream(stop.clone());
    env.ok(&["network", "create", "dnsnet"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "named",
        "--network",
        "dnsnet",
        "--dns",
        "127.0.0.1",
        "bb",
        "sleep",
        "100",
    ]);
    let pid = env.container("named").state.pid;
    let ip = env.inspect("named")["NetworkSettings"]["Networks"]["dnsnet"]["IPAddress"]
        .as_str()
        .expect("address")
        .to_string();
    // A client inside the container's namespace (a thread that joined it).
    let client = std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("netns");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let server = "127.0.0.11:53";
        // A container's name, over TCP.
        let local = dns_answer(&dns_over_tcp(server, &dns_query(1, "named")));
        // Another name over UDP: the upstream's truncated answer is
        // passed on; the client asks again over TCP and gets it.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        udp.send_to(&dns_query(2, "far.example"), server).unwrap();
        let mut buf = [0u8; 4096];
        let n = udp.recv(&mut buf).expect("UDP answer");
        let over_udp = dns_answer(&buf[..n]);
        let over_tcp = dns_answer(&dns_over_tcp(server, &dns_query(3, "far.example")));
        (local, over_udp, over_tcp)
    });
    let (local, over_udp, over_tcp) = client.join().expect("client");
    stop.store(true, Ordering::Relaxed);
    for t in upstream {
        t.join().unwrap();
    }
    assert_eq!(local, (vec![ip], false));
    assert_eq!(over_udp, (vec![], true));
    assert_eq!(over_tcp, (vec!["10.1.2.3".to_string()], false));
    env.ok(&["rm", "-f", "named"]);
    env.ok(&["network", "rm", "dnsnet"]);
}

#[test]
fn published_port_answers_short_requests_without_delay() {
    use std::io::{Read, Write};
    let env = crate::env_or_skip!();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    run_httpd(&env, &["--name", "quick", "-p", &spec], "quick");
    let url = format!("http://127.0.0.1:{port}/");
    assert!(
        eventually(5, || host_wget(&url).is_some_and(|b| b.contains("quick"))),
        "{url}"
    );
    // Ten short requests one after another through the proxy: the
    // request must not wait in the proxy (a corked splice held each for
    // the kernel's 200 ms timer).
    let start = std::time::Instant::now();
    for _ in 0..10 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        assert!(answer.contains("quick"), "{answer}");
    }
    let took = start.elapsed();
    assert!(
        took < std::time::Duration::from_millis(1500),
        "10 requests took {took:?}"
    );
    env.ok(&["rm", "-f", "quick"]);
}

/// The fsyncs (and fdatasyncs) a command and every process it starts
/// make, counted by strace.
fn fsyncs_of(env: &Env, args: &[&str]) -> Vec<String> {
    if !crate::dockerd::have("strace") {
        crate::dockerd::required("strace is not installed (tools/install-deps.sh)");
        return Vec::new();
    }
    let log = env.dir.path().join(format!("strace-{}", rand_suffix()));
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=fsync,fdatasync,syncfs,sync",
            "-o",
        ])
        .arg(&log)
        .arg(&env.bin)
        .arg("--root")
        .arg(env.root())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("strace");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let text = std::fs::read_to_string(&log).expect("strace log");
    let _ = std::fs::remove_file(&log);
    text.lines()
        .filter(|l| l.contains("sync("))
        .map(str::to_string)
        .collect()
}

/// What a container's run writes to the store (its state, events,
/// address lease, endpoint) describes processes that a power loss ends
/// anyway: it is committed without an fsync (docs/store.md), which cost
/// 3-10 ms each on this disk and was most of what the bridge added to a
/// start (a lease taken and given back: two more commits).
#[test]
fn run_rm_on_the_bridge_or_none_makes_no_fsync() {
    let env = crate::env_or_skip!();
    // The first run makes the bridge and its rules; the store exists.
    env.ok(&["run", "--rm", "bb", "true"]);
    for args in [
        &["run", "--rm", "bb", "true"][..],
        &["run", "--rm", "--network", "none", "bb", "true"][..],
        &[
            "run",
            "--rm",
            "--name",
            "named",
            "-p",
            "127.0.0.1::80",
            "bb",
            "true",
        ][..],
    ] {
        let syncs = fsyncs_of(&env, args);
        assert!(
            syncs.is_empty(),
            "{args:?} made fsyncs:\n{}",
            syncs.join("\n")
        );
    }
}

/// A GET of / on `addr` with a raw socket (IPv6 too); the body.
fn http_get(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// As Docker 20.10 (checked side by side, see docs/network.md): a port
/// published on every address is bound on `0.0.0.0` and on `[::]`, both
/// forwarded to the container's IPv4 address, and listed as
/// `:::PORT`; `-p [::1]:P:C` binds IPv6 loopback only; an IPv6 port in
/// use is refused before the container starts.
#[test]
fn published_port_on_every_address_listens_on_ipv6_too() {
    let env = crate::env_or_skip!();
    let port = free_port();
    let spec = format!("{port}:80");
    run_httpd(&env, &["--name", "six", "-p", &spec], "hello-six");
    let v6: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let v4: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        eventually(5, || http_get(v6).is_some_and(|b| b.contains("hello-six"))),
        "no answer on {v6}"
    );
    assert!(http_get(v4).is_some_and(|b| b.contains("hello-six")));
    assert_eq!(
        env.ok(&["port", "six"]),
        format!("80/tcp -> 0.0.0.0:{port}\n80/tcp -> :::{port}\n")
    );
    assert_eq!(
        env.ok(&["ps", "--filter", "name=six", "--format", "{{.Ports}}"])
            .trim(),
        format!("0.0.0.0:{port}->80/tcp, :::{port}->80/tcp")
    );
    let v = env.inspect("six");
    assert_eq!(
        v["NetworkSettings"]["Ports"]["80/tcp"],
        serde_json::json!([
            {"HostIp": "0.0.0.0", "HostPort": port.to_string()},
            {"HostIp": "::", "HostPort": port.to_string()}
        ])
    );
    // Another container cannot have it.
    let again = env.run(&["run", "--rm", "-p", &spec, "bb", "true"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains(&format!(
            "Bind for 0.0.0.0:{port} failed: port is already allocated"
        )),
        "{}",
        stderr(&again)
    );
    env.ok(&["stop", "-t", "1", "six"]);
    assert!(
        http_get(v6).is_none(),
        "the IPv6 port must close with the container"
    );

    // IPv6 loopback only, bracketed as Docker takes it.
    let port2 = free_port();
    let spec2 = format!("[::1]:{port2}:80");
    run_httpd(&env, &["--name", "loop6", "-p", &spec2], "hello-loop6");
    let v6: std::net::SocketAddr = format!("[::1]:{port2}").parse().unwrap();
    assert!(
        eventually(5, || http_get(v6)
            .is_some_and(|b| b.contains("hello-loop6"))),
        "no answer on {v6}"
    );
    assert!(http_get(format!("127.0.0.1:{port2}").parse().unwrap()).is_none());
    assert_eq!(
        env.ok(&["port", "loop6"]),
        format!("80/tcp -> ::1:{port2}\n")
    );
    env.ok(&["rm", "-f", "loop6"]);

    // Something else holds [::]:PORT3 only (an IPv6-only socket, so
    // 0.0.0.0:PORT3 is free): refused before start, naming `:::PORT3`.
    let port3 = free_port();
    let holder = v6_only_listener(port3);
    let spec3 = format!("{port3}:80");
    let out = env.run(&[
        "run", "-d", "--name", "clash", "-p", &spec3, "bb", "sleep", "30",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "Bind for :::{port3} failed: port is already allocated"
        )),
        "{}",
        stderr(&out)
    );
    drop(holder);
    let _ = env.run(&["rm", "-f", "clash"]);
    // The IPv4 half it had bound is free again.
    assert!(std::net::TcpListener::bind(format!("0.0.0.0:{port3}")).is_ok());
    assert_eq!(dnat_rules(), 0);
}

/// A listening socket on `[::]:port` that leaves `0.0.0.0:port` free.
fn v6_only_listener(port: u16) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{self as s, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn6};
    let fd = s::socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    s::setsockopt(&fd, sockopt::Ipv6V6Only, &true).expect("IPV6_V6ONLY");
    let addr: std::net::SocketAddrV6 = format!("[::]:{port}").parse().unwrap();
    s::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn6::from(addr),
    )
    .expect("bind");
    s::listen(&fd, s::Backlog::new(8).expect("backlog")).expect("listen");
    fd
}

/// `network connect`/`disconnect` errors come from Docker's daemon:
/// one `Error response from daemon:` line, exit 1 (strata printed the
/// prefix twice, `Error: Error response from daemon: ...`).
#[test]
fn network_connect_errors_read_as_dockers() {
    let env = crate::env_or_skip!();
    env.ok(&["create", "--name", "idle", "bb", "true"]);
    for verb in ["connect", "disconnect"] {
        let out = env.run(&["network", verb, "nosuchnet", "idle"]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        assert_eq!(
            stderr(&out).trim(),
            "Error response from daemon: network nosuchnet not found",
            "{verb}"
        );
    }
    env.ok(&["rm", "idle"]);
}
