//! containerd's snapshotter conformance suite (Go, the testsuite package
//! Debian's golang-github-containerd-containerd-dev ships) against `strata
//! snapshotter`, through tests/snapshotter-conformance/. Built offline in
//! GOPATH mode from Debian's Go packages (GOPROXY=off): no network.
//! Every subtest must pass, except those listed with their reason in
//! tests/snapshotter-conformance/expected-failures.txt (failed or skipped).

#[test]
fn containerd_conformance_suite_passes() {
    if !crate::common::require_root() || !super::harness::go_available() {
        return;
    }
    let harness = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshotter-conformance");
    let out = super::harness::go_command(std::path::Path::new(harness))
        .args([
            "test",
            "-count=1",
            "-parallel",
            "2",
            "-timeout",
            "20m",
            "-v",
            ".",
        ])
        .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
        .output()
        .expect("run go test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected: Vec<(String, String)> =
        std::fs::read_to_string(format!("{harness}/expected-failures.txt"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, reason) = l.split_once(' ').unwrap_or((l, ""));
                (name.to_string(), reason.trim().to_string())
            })
            .collect();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("--- PASS: TestStrata/") {
            passed.push(rest.split_whitespace().next().unwrap_or("").to_string());
        } else if let Some(rest) = line.strip_prefix("--- FAIL: TestStrata/") {
            failed.push(rest.split_whitespace().next().unwrap_or("").to_string());
        } else if let Some(rest) = line.strip_prefix("--- SKIP: TestStrata/") {
            skipped.push(rest.split_whitespace().next().unwrap_or("").to_string());
        }
    }
    eprintln!(
        "conformance: {} passed, {} failed {failed:?}, {} skipped {skipped:?}",
        passed.len(),
        failed.len(),
        skipped.len()
    );
    let unexpected: Vec<&String> = failed
        .iter()
        .chain(&skipped)
        .filter(|f| !expected.iter().any(|(n, _)| n == *f))
        .collect();
    // Every subtest the suite has ran: one `t.Run` each in testsuite.go.
    let suite = std::fs::read_to_string(
        "/usr/share/gocode/src/github.com/containerd/containerd/snapshots/testsuite/testsuite.go",
    )
    .unwrap();
    let total = suite.matches("t.Run(\"").count();
    assert_eq!(
        passed.len() + failed.len() + skipped.len(),
        total,
        "subtests missing from the output:\n{stdout}"
    );
    assert!(
        unexpected.is_empty(),
        "conformance subtests failed or skipped without a listed reason: {unexpected:?}\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let fixed: Vec<&String> = expected
        .iter()
        .map(|(n, _)| n)
        .filter(|n| passed.contains(n))
        .collect();
    assert!(
        fixed.is_empty(),
        "listed as failing but passed (update the list): {fixed:?}"
    );
}
