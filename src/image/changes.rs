//! Dockerfile-style config changes (`import -c`, `commit -c`): CMD,
//! ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
//! WORKDIR.

use std::collections::BTreeMap;

use serde_json::Value;

use super::oci::RunConfig;

#[derive(Debug, thiserror::Error)]
#[error("invalid change {change:?}: {reason}")]
pub struct ChangeError {
    pub change: String,
    pub reason: String,
}

/// Applies each change to `config`, in order.
pub fn apply_changes(config: &mut RunConfig, changes: &[String]) -> Result<(), ChangeError> {
    for change in changes {
        apply_change(config, change)?;
    }
    Ok(())
}

fn json_or_shell(arg: &str) -> Vec<String> {
    if arg.trim_start().starts_with('[') {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(arg.trim()) {
            return list;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), arg.to_string()]
}

fn json_or_words(arg: &str) -> Vec<String> {
    if arg.trim_start().starts_with('[') {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(arg.trim()) {
            return list;
        }
    }
    arg.split_whitespace().map(str::to_string).collect()
}

/// `k=v k2="v 2"` pairs, or the legacy `k v` form.
fn pairs(arg: &str) -> Result<Vec<(String, String)>, String> {
    let arg = arg.trim();
    let first = arg.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = arg
            .split_once(char::is_whitespace)
            .ok_or("needs a name and a value")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = arg.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!("{key:?} is not of the form name=value"));
        }
        let mut value = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => {
                    quote = None;
                    chars.next();
                }
                Some(_) => {
                    if c == '\\' {
                        chars.next();
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                        continue;
                    }
                    value.push(c);
                    chars.next();
                }
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    chars.next();
                }
                None if c.is_whitespace() => break,
                None => {
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

fn apply_change(config: &mut RunConfig, change: &str) -> Result<(), ChangeError> {
    let err = |reason: String| ChangeError {
        change: change.to_string(),
        reason,
    };
    let trimmed = change.trim();
    let (instruction, arg) = trimmed
        .split_once(char::is_whitespace)
        .unwrap_or((trimmed, ""));
    let arg = arg.trim();
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(json_or_shell(arg)),
        "ENTRYPOINT" => config.entrypoint = Some(json_or_shell(arg)),
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs(arg).map_err(err)? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs(arg).map_err(err)? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in arg.split_whitespace() {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if port.parse::<u16>().is_err() {
                    return Err(err(format!("invalid port {p:?}")));
                }
                ports.insert(
                    format!("{port}/{}", proto.to_lowercase()),
                    Value::Object(Default::default()),
                );
            }
        }
        "VOLUME" => {
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for v in json_or_words(arg) {
                volumes.insert(v, Value::Object(Default::default()));
            }
        }
        "USER" => config.user = Some(arg.to_string()),
        "WORKDIR" => {
            let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
            config.working_dir = Some(if arg.starts_with('/') {
                arg.to_string()
            } else {
                format!("{}/{arg}", base.trim_end_matches('/'))
            });
        }
        "STOPSIGNAL" => config.stop_signal = Some(arg.to_string()),
        "ONBUILD" => config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(arg.to_string()),
        other => return Err(err(format!("{other} is not a valid change command"))),
    }
    if arg.is_empty() {
        return Err(err("missing argument".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_docker_changes() {
        let mut c = RunConfig::default();
        apply_changes(
            &mut c,
            &[
                "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]".into(),
                "ENV A=1 B=\"two words\"".into(),
                "ENV A 3".into(),
                "EXPOSE 80 53/udp".into(),
                "WORKDIR /srv".into(),
                "LABEL a=b".into(),
                "ENTRYPOINT exec top".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env.unwrap(), vec!["B=two words", "A=3"]);
        assert!(c.exposed_ports.unwrap().contains_key("53/udp"));
        assert_eq!(c.working_dir.unwrap(), "/srv");
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "exec top"]);
        assert!(apply_changes(&mut RunConfig::default(), &["FROM x".into()]).is_err());
        assert!(apply_changes(&mut RunConfig::default(), &["EXPOSE abc".into()]).is_err());
    }
}
