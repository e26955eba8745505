//! The template engine against Go's own text/template (the program in
//! template_oracle/, run with Debian's golang-go, nothing downloaded):
//! every case runs through both, and the outputs must be the same, or
//! both must fail.

use serde_json::{json, Value};

fn container() -> Value {
    json!({
        "Id": "4f66ad9a0b2e",
        "Name": "/web",
        "Args": ["-c", "i=0; while true; do i=$((i+1)); done"],
        "Config": {
            "Env": ["PATH=/usr/bin:/bin", "HOME=/root"],
            "Labels": {"com.example.b": "2", "com.example.a": "1", "empty": ""},
            "Cmd": ["sh", "-c", "echo hi"],
            "Entrypoint": null,
            "ExposedPorts": {}
        },
        "State": {"Status": "running", "Running": true, "Paused": false, "ExitCode": 0,
                  "Pid": 4242, "Health": null, "StartedAt": "2024-01-02T03:04:05Z"},
        "Mounts": [],
        "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}, {"PrivatePort": 443, "Type": "tcp"}],
        "Size": 1234567,
        "Ratio": 0.25,
        "Big": 12345678.5,
        "Tiny": 0.0000125,
        "Neg": -3,
        "Names": "web,api",
        "Image": "docker.io/library/busybox:latest",
        "Nested": {"A": {"B": {"C": "deep"}}, "List": [[1, 2], [3]]}
    })
}

const CASES: &[&str] = &[
    // fields, missing keys, nil
    "{{.Id}}",
    "{{.Name}} {{.State.Status}} {{.State.Pid}}",
    "{{.Nope}}",
    "{{.Nope.Deeper}}",
    "{{.State.Health.Status}}",
    "{{.Name.Field}}",
    "{{.Config.Env}}",
    "{{.Config.Labels}}",
    "{{.Ports}}",
    "{{.Config.ExposedPorts}}",
    "{{.Size}} {{.Ratio}} {{.Big}} {{.Tiny}} {{.Neg}}",
    "{{.}}",
    "{{.Nested.A.B.C}}",
    "{{$.Name}} {{$}}",
    // range
    "{{range .Config.Env}}{{println .}}{{end}}",
    "{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}",
    "{{range $e := .Config.Env}}[{{$e}}]{{end}}",
    "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
    "{{range .Mounts}}x{{else}}none{{end}}",
    "{{range .Nope}}x{{else}}missing{{end}}",
    "{{range .State.Health}}x{{else}}nil{{end}}",
    "{{range .Size}}x{{end}}",
    "{{range .Ports}}{{.PrivatePort}}/{{.Type}}{{if .PublicPort}}->{{.PublicPort}}{{end}} {{end}}",
    "{{range $i, $e := .Config.Cmd}}{{if eq $i 1}}{{continue}}{{end}}{{$e}} {{end}}",
    "{{range .Config.Cmd}}{{if eq . \"-c\"}}{{break}}{{end}}{{.}}{{end}}",
    "{{range .Nested.List}}{{range .}}{{.}},{{end}}|{{end}}",
    "{{range $k, $v := .Nested}}{{$k}} {{end}}",
    // if / else if / else / with
    "{{if .State.Running}}up{{else}}down{{end}}",
    "{{if .State.Paused}}paused{{else if .State.Running}}running{{else}}stopped{{end}}",
    "{{if not .State.Running}}a{{else if eq .State.ExitCode 1}}b{{else if eq .State.ExitCode 0}}c{{end}}",
    "{{if and .State.Running (eq .State.Pid 4242)}}yes{{end}}",
    "{{if or .State.Paused .Nope}}yes{{else}}no{{end}}",
    "{{with .State}}{{.Status}}/{{.Pid}}{{end}}",
    "{{with .Nope}}x{{else}}empty{{end}}",
    "{{with $s := .State.Status}}{{$s}}{{end}}",
    "{{if .Mounts}}m{{end}}{{if .Config.Labels}}l{{end}}{{if .Neg}}n{{end}}{{if .Ratio}}r{{end}}",
    // variables
    "{{$x := .Name}}{{$x}} {{$x = \"other\"}}{{$x}}",
    "{{$n := 0}}{{range .Config.Env}}{{$n = 1}}{{end}}{{$n}}",
    "{{range .Config.Env}}{{$y := .}}{{end}}{{$y}}",
    "{{$undefined}}",
    // pipelines and parentheses
    "{{.Name | printf \"%s!\"}}",
    "{{.Config.Cmd | join \" \" | upper}}",
    "{{(index .Ports 0).PublicPort}}",
    "{{(index .Nested.List 1) | len}}",
    "{{len .Config.Env | printf \"%03d\"}}",
    "{{.Name | .State}}",
    // len, index, slice
    "{{len .Config.Env}} {{len .Config.Labels}} {{len .Name}} {{len .Mounts}}",
    "{{len .Size}}",
    "{{len .Nope}}",
    "{{index .Config.Labels \"com.example.a\"}}|{{index .Config.Labels \"absent\"}}|",
    "{{index .Config.Env 1}}",
    "{{index .Config.Env 5}}",
    "{{index .Nested.List 0 1}}",
    "{{index .Name 1}}",
    "{{index .Nope 1}}",
    "{{index .State \"absent\"}}",
    "{{index .State 3}}",
    "{{index .Size 0}}",
    "{{slice .Name 1 3}} {{slice .Name 2}} {{slice .Config.Env 1}}",
    "{{slice .Name 3 1}}",
    "{{slice .Name 1 2 3}}",
    "{{slice .Config.Env 0 1 2}}",
    "{{slice .Name 99}}",
    // comparisons
    "{{eq .State.Status \"running\"}} {{ne .State.Pid 1}} {{eq .State.ExitCode 0 1 2}}",
    "{{lt 1 2}} {{le 2 2}} {{gt \"b\" \"a\"}} {{ge 1.5 2.5}} {{lt .Neg 0}}",
    "{{eq .Nope \"x\"}}",
    "{{eq .State.ExitCode 0.0}}",
    "{{eq .Config.Env .Config.Env}}",
    "{{lt true false}}",
    "{{lt .Nope 1}}",
    "{{eq .State.Health nil}}",
    "{{eq 1}}",
    // and/or/not return values
    "{{and 1 0 2}} {{and 1 2}} {{or 0 \"\" 3}} {{or 0 \"\"}} {{not 0}} {{not .Name}}",
    "{{and .Nope .Crash.Field}}",
    "{{or .Name .State.Health.Status}}",
    // print family
    "{{print 1 2 \"a\" 3 \"b\" \"c\"}}",
    "{{print .Nope}} {{print nil}}",
    "{{println .Name .State.Pid}}",
    "{{printf \"%d|%5d|%-5d|%05d|%x|%X|%o|%b|%+d\" 42 42 42 42 255 255 8 5 3}}",
    "{{printf \"%s|%10s|%-10s|%.2s|%q\" \"abc\" \"abc\" \"abc\" \"abc\" \"a\\\"b\\n\"}}",
    "{{printf \"%v|%v|%v|%v\" .Config.Env .Config.Labels .Ports .State.Health}}",
    "{{printf \"%f|%.2f|%8.3f|%e|%g|%G|%.3g\" 3.14159 3.14159 3.14159 1234.5678 0.000012 1e21 3.14159}}",
    "{{printf \"%d\" \"x\"}}|{{printf \"%s\" 5}}|{{printf \"%d %d\" 1}}|{{printf \"%d\" 1 2}}",
    "{{printf \"%t|%v|%c|%U|%%\" true false 65 9731}}",
    "{{printf \"%x|%q\" \"hi\" .Config.Env}}",
    "{{printf \"%v %v\" .Size .Big}}",
    "{{printf \"%T %T %T %T\" 1 1.5 \"s\" .Config.Env}}",
    "{{printf}}",
    "{{printf \"%6.2f%%\" .Ratio}}",
    // Docker's functions
    "{{json .Config}}",
    "{{json .Config.Env}} {{json .Name}} {{json .Nope}} {{json .Ratio}} {{json .Big}} {{json .Tiny}}",
    "{{json \"<a & b>\\u2028\"}}",
    "{{join .Config.Env \",\"}}",
    "{{join .Nope \",\"}}",
    "{{join .Ports \",\"}}",
    "{{split .Names \",\"}} {{len (split .Names \",\")}} {{index (split .Image \":\") 1}}",
    "{{split .Name \"\"}}",
    "{{lower \"ABC\"}} {{upper .Name}} {{title \"hello wide-world foo_bar\"}}",
    "{{lower .Size}}",
    "{{pad .Name 2 3}}|{{pad \"\" 2 3}}|",
    "{{truncate .Image 6}}|{{truncate .Name 99}}|",
    "{{truncate .Image}}",
    // html, js, urlquery
    "{{html \"<a href='x'>&\\\"\"}} {{urlquery \"a b&c=d/é\"}} {{js \"it's <b>\\\"q\\\"\"}}",
    // whitespace trimming and comments
    "a  {{- .Name -}}  b",
    "a\n  {{- /* a comment */ -}}\n  b",
    "{{/* only a comment */}}x",
    "x {{- 3}}",
    "{{3 -}} y",
    "{{-3}}",
    "{{range .Config.Env -}}\n  {{.}}\n{{- end}}",
    // constants
    "{{1}} {{1.5}} {{0x1F}} {{1e3}} {{'a'}} {{\"s\\tq\"}} {{`raw\\n`}} {{true}} {{-7}}",
    // parse errors
    "{{.Name",
    "{{if .Name}}x",
    "{{end}}",
    "{{else}}",
    "{{nope}}",
    "{{.Name | }}",
    "{{(.Name}}",
    "{{.Name)}}",
    "{{break}}",
    "{{if}}{{end}}",
    "{{range $a, $b, $c := .X}}{{end}}",
    "{{\"unterminated}}",
    "{{.Name 3}}",
    "{{3 4}}",
    "{{nil}}",
    "{{$x := 1}}{{$x.y}}",
];

/// Where strata follows Docker rather than the oracle: Docker executes
/// templates on typed structs, where a JSON null is a nil pointer
/// (printed `<nil>`); the oracle's untyped maps print `<no value>`.
/// `define` is refused: a `--format` is one template.
const DOCKER_TYPED: &[(&str, Result<&str, &str>)] = &[
    ("{{.State.Health}}", Ok("<nil>")),
    ("{{.Config.Entrypoint}}", Ok("<nil>")),
    (
        "{{define \"x\"}}y{{end}}",
        Err("template: :1: {{define}} is not supported in --format"),
    ),
];

#[test]
fn templates_follow_docker_where_the_oracle_cannot() {
    let data = container();
    for (source, expected) in DOCKER_TYPED {
        let ours = strata::template::Template::parse(source)
            .and_then(|t| t.execute(&data))
            .map_err(|e| e.to_string());
        assert_eq!(
            ours.as_deref(),
            expected.map_err(str::to_string).as_deref(),
            "{source}"
        );
    }
}

#[test]
fn templates_match_go() {
    if !crate::common::require_tool("go") {
        return;
    }
    let data = container();
    let cases: Vec<Value> = CASES
        .iter()
        .map(|t| json!({"t": t, "d": data}))
        .chain([
            // Table headers: Docker's functions return their argument.
            json!({"t": "{{.ID}}\t{{upper .Name}}\t{{pad .Size 1 1}}\t{{json .Status}}", "d": {"ID": "CONTAINER ID", "Name": "NAMES", "Size": "SIZE", "Status": "STATUS"}, "h": true}),
            json!({"t": "{{truncate .Image 3}}|{{join .Names \",\"}}", "d": {"Image": "IMAGE", "Names": "NAMES"}, "h": true}),
        ])
        .collect();
    let oracle = go_oracle(&cases);
    let mut mismatches = Vec::new();
    for (case, expected) in cases.iter().zip(&oracle) {
        let source = case["t"].as_str().expect("template");
        let header = case["h"].as_bool().unwrap_or(false);
        let ours = strata::template::Template::parse(source).and_then(|t| {
            if header {
                t.execute_header(&case["d"])
            } else {
                t.execute(&case["d"])
            }
        });
        let same = match (&ours, expected.get("ok")) {
            (Ok(out), Some(Value::String(go))) => out == go,
            (Err(_), None) => true,
            _ => false,
        };
        if !same {
            mismatches.push(format!(
                "{source:?}\n   go:     {expected}\n   strata: {ours:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} templates differ from Go:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

/// Runs the Go oracle on the cases; one result object per case.
fn go_oracle(cases: &[Value]) -> Vec<Value> {
    use std::io::Write;
    let dir = tempfile::tempdir_in(crate::common::scratch_base()).expect("tempdir");
    let program = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/template_oracle/main.go"
    );
    let mut child = std::process::Command::new("go")
        .args(["run", program])
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GO111MODULE", "on")
        .env("GOCACHE", dir.path().join("cache"))
        .env("GOPATH", dir.path().join("gopath"))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("go run");
    let input = serde_json::to_vec(cases).expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write cases");
    let out = child.wait_with_output().expect("go oracle");
    assert!(
        out.status.success(),
        "go oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("oracle json");
    assert_eq!(results.len(), cases.len());
    results
}
