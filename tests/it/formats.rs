//! `--format` on the commands, as Docker's client renders it: Go
//! templates with control structures, table headers through Docker's
//! header functions, Docker's errors and exit codes for bad templates.

use crate::common::{assert_fails_one_line, busybox_rootfs_tar, Env};

fn import_labelled(env: &Env) {
    let tar = busybox_rootfs_tar(env, "fmt");
    env.ok(&[
        "import",
        "-c",
        "ENV A=1 B=two",
        "-c",
        "LABEL zeta=last alpha=first",
        tar.to_str().expect("utf8"),
        "fmt:1.0",
    ]);
}

#[test]
fn inspect_runs_docker_one_liners() {
    let env = Env::new();
    import_labelled(&env);
    let out = env.ok(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        "fmt:1.0",
    ]);
    assert!(out.starts_with("A=1\nB=two\n"), "{out:?}");
    let out = env.ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}|{{len .RootFS.Layers}}|{{if .Config.Labels}}labelled{{else}}bare{{end}}|{{index .Config.Labels \"alpha\" | upper}}",
        "fmt:1.0",
    ]);
    assert_eq!(out, "alpha=first zeta=last |1|labelled|FIRST\n");
    let out = env.ok(&[
        "inspect",
        "--format",
        "{{- with .Config -}} {{json .Labels}} {{- end}}",
        "fmt:1.0",
    ]);
    assert_eq!(out, "{\"alpha\":\"first\",\"zeta\":\"last\"}\n");
}

#[test]
fn table_headers_go_through_header_functions() {
    let env = Env::new();
    import_labelled(&env);
    let out = env.ok(&[
        "images",
        "--format",
        "table {{.Repository}}\\t{{upper .Tag}}\\t{{printf \"%.3s\" .Repository}}",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // Docker: `upper` in a header returns its argument; printf prints it.
    assert_eq!(lines[0], "REPOSITORY   TAG       REP");
    assert_eq!(lines[1], "fmt          1.0       fmt");
    // Without `table`: no header, one line per row.
    let out = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(out, "fmt:1.0\n");
}

#[test]
fn bad_templates_fail_as_docker() {
    let env = Env::new();
    import_labelled(&env);
    let args = ["inspect", "-f", "{{nope .Id}}", "fmt:1.0"];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(64), "inspect: parse errors are 64");
    let line = assert_fails_one_line(&out, &args);
    assert!(
        line.contains("Template parsing error: template: :1: function \"nope\" not defined"),
        "{line}"
    );
    let args = ["images", "--format", "{{if .Repository}}x"];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(1));
    let line = assert_fails_one_line(&out, &args);
    assert!(
        line.contains("Template parsing error: template: :1: unexpected EOF"),
        "{line}"
    );
    let args = ["inspect", "-f", "{{.Config.Env.Nope}}", "fmt:1.0"];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(1));
    let line = assert_fails_one_line(&out, &args);
    assert!(
        line.contains("executing \"\" at <.Config.Env.Nope>: can't evaluate field Nope"),
        "{line}"
    );
}

#[test]
fn volume_and_network_inspect_take_templates() {
    let env = Env::new();
    env.ok(&["volume", "create", "--label", "k=v", "data"]);
    assert_eq!(
        env.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}} {{range $k, $v := .Labels}}{{$k}}={{$v}}{{end}}",
            "data"
        ]),
        "data local k=v\n"
    );
    let args = ["volume", "inspect", "--format", "{{.Name", "data"];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(64));
    assert!(assert_fails_one_line(&out, &args).contains("Template parsing error: "));
}
