//! The instructions that only change the image config (each one history
//! entry with `empty_layer`, as Docker's builder records them): ARG, ENV,
//! LABEL, MAINTAINER, EXPOSE, VOLUME, CMD, ENTRYPOINT, STOPSIGNAL,
//! HEALTHCHECK, SHELL, ONBUILD, USER.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::args::parse_arg;
use super::super::error::BuildError;
use super::super::execute::Builder;
use super::super::expand::{expand_word, expand_words, split_words};
use super::super::parse::{Instruction, Keyword};
use super::go_list;

impl Builder<'_> {
    pub(in super::super) fn dispatch_arg(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let globals = self
            .args
            .global_vars(&self.plan.global_args, self.escape, &self.file)?;
        let mut shown = Vec::new();
        for (name, default) in parse_arg(ins, self.escape, &self.file)? {
            let default = match default {
                Some(d) => Some(self.expand(ins, &d)?),
                None => None,
            };
            let value = self
                .args
                .given(&name)
                .or_else(|| default.clone())
                .or_else(|| globals.get(&name).cloned());
            shown.push(match &default {
                Some(d) => format!("{name}={d}"),
                None => name.clone(),
            });
            self.stage_args.retain(|(k, _)| k != &name);
            self.stage_args.push((name, value));
        }
        let text = format!("ARG {}", shown.join(" "));
        // The values themselves are not in the config: the steps that use
        // them (RUN's environment, expanded instructions) key on them.
        self.metadata_step(ins, text, |_, _| {})
    }

    /// `k=v` pairs (or the legacy `k v` form), values expanded.
    fn pairs(&self, ins: &Instruction) -> Result<Vec<(String, String)>, BuildError> {
        let words = split_words(&ins.args, self.escape);
        let first = words.first().cloned().unwrap_or_default();
        if !first.contains('=') {
            let rest = ins.args.trim_start()[first.len()..].trim_start();
            if ins.keyword == Keyword::Env && rest.is_empty() {
                return Err(self.error_at(
                    ins,
                    format!(
                        "ENV {}: ENV must have two arguments (ENV name value, or ENV name=value)",
                        ins.args
                    ),
                ));
            }
            let key = self.expand(ins, &first)?;
            let value = self.expand(ins, rest)?;
            return Ok(vec![(key, value)]);
        }
        let mut out = Vec::new();
        for word in words {
            let Some((k, v)) = word.split_once('=') else {
                return Err(self.error_at(
                    ins,
                    format!("{}: syntax error - can't find = in {word:?}. Must be of the form: name=value", ins.keyword.name()),
                ));
            };
            let key = self.expand(ins, k)?;
            if key.is_empty() {
                return Err(self.error_at(
                    ins,
                    format!("{}: names can not be blank", ins.keyword.name()),
                ));
            }
            out.push((key, self.expand(ins, v)?));
        }
        Ok(out)
    }

    pub(in super::super) fn dispatch_env(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let pairs = self.pairs(ins)?;
        let text = format!(
            "ENV {}",
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.metadata_step(ins, text, move |run, _| {
            let mut env = run.env.take().unwrap_or_default();
            for (k, v) in pairs {
                let item = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(k.as_str()))
                {
                    Some(slot) => *slot = item,
                    None => env.push(item),
                }
            }
            run.env = Some(env);
        })
    }

    pub(in super::super) fn dispatch_label(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let pairs = self.pairs(ins)?;
        let text = format!(
            "LABEL {}",
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.metadata_step(ins, text, move |run, _| {
            let labels = run.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                labels.insert(k, v);
            }
        })
    }

    pub(in super::super) fn dispatch_maintainer(
        &mut self,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let name = ins.args.clone();
        let text = format!("MAINTAINER {name}");
        self.metadata_step(ins, text, move |_, config| config.author = Some(name))
    }

    pub(in super::super) fn dispatch_expose(
        &mut self,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let words = expand_words(&ins.args, &self.vars(), self.escape)
            .map_err(|e| self.error_at(ins, format!("EXPOSE {}: {e}", ins.args)))?;
        let mut ports = Vec::new();
        for w in words {
            let (range, proto) = match w.split_once('/') {
                Some((r, p)) => (r.to_string(), p.to_ascii_lowercase()),
                None => (w.clone(), "tcp".to_string()),
            };
            if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                return Err(self.error_at(ins, format!("EXPOSE {w}: invalid proto: {proto}")));
            }
            let bad = || self.error_at(ins, format!("EXPOSE {w}: invalid containerPort: {range}"));
            let (lo, hi) = match range.split_once('-') {
                Some((a, b)) => (
                    a.parse::<u16>().map_err(|_| bad())?,
                    b.parse::<u16>().map_err(|_| bad())?,
                ),
                None => {
                    let p = range.parse::<u16>().map_err(|_| bad())?;
                    (p, p)
                }
            };
            if lo > hi {
                return Err(bad());
            }
            for p in lo..=hi {
                ports.push(format!("{p}/{proto}"));
            }
        }
        // Docker's text: the ports as written, sorted.
        let mut written = expand_words(&ins.args, &self.vars(), self.escape).unwrap_or_default();
        written.sort();
        let text = format!("EXPOSE {}", written.join(" "));
        self.metadata_step(ins, text, move |run, _| {
            let map = run.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                map.insert(p, Value::Object(Default::default()));
            }
        })
    }

    pub(in super::super) fn dispatch_volume(
        &mut self,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let vars = self.vars();
        let raw: Vec<String> = match ins.json_args() {
            Some(list) => list,
            None => split_words(&ins.args, self.escape),
        };
        let mut volumes = Vec::new();
        for r in raw {
            let v = expand_word(&r, &vars, self.escape)
                .map_err(|e| self.error_at(ins, format!("VOLUME {}: {e}", ins.args)))?;
            if v.trim().is_empty() {
                return Err(self.error_at(ins, "VOLUME specified can not be an empty string"));
            }
            volumes.push(v);
        }
        let text = format!("VOLUME [{}]", volumes.join(" "));
        self.metadata_step(ins, text, move |run, _| {
            let map = run.volumes.get_or_insert_with(BTreeMap::new);
            for v in volumes {
                map.insert(v, Value::Object(Default::default()));
            }
        })
    }

    /// CMD/ENTRYPOINT/HEALTHCHECK CMD arguments: exec form as given, shell
    /// form through the shell.
    fn command(&self, args: &str) -> Vec<String> {
        match super::super::parse::parse_json_array(args) {
            Some(list) => list,
            None => {
                let mut c = self.shell();
                c.push(args.to_string());
                c
            }
        }
    }

    pub(in super::super) fn dispatch_cmd(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let cmd = self.command(&ins.args);
        self.cmd_set = true;
        let text = format!("CMD {}", go_list(&cmd));
        self.metadata_step(ins, text, move |run, _| run.cmd = Some(cmd))
    }

    pub(in super::super) fn dispatch_entrypoint(
        &mut self,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let ep = self.command(&ins.args);
        let keep_cmd = self.cmd_set;
        let text = format!("ENTRYPOINT {}", go_list(&ep));
        self.metadata_step(ins, text, move |run, _| {
            run.entrypoint = Some(ep);
            // A CMD inherited from the base image does not survive a new
            // ENTRYPOINT (Docker's rule).
            if !keep_cmd {
                run.cmd = None;
            }
        })
    }

    pub(in super::super) fn dispatch_stopsignal(
        &mut self,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let sig = self.expand(ins, &ins.args)?;
        if crate::container::parse_signal(&sig).is_err() {
            return Err(self.error_at(ins, format!("STOPSIGNAL {sig}: invalid signal")));
        }
        let text = format!("STOPSIGNAL {sig}");
        self.metadata_step(ins, text, move |run, _| run.stop_signal = Some(sig))
    }

    pub(in super::super) fn dispatch_healthcheck(
        &mut self,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let (word, rest) = match ins.args.trim().split_once(char::is_whitespace) {
            Some((w, r)) => (w.to_ascii_uppercase(), r.trim().to_string()),
            None => (ins.args.trim().to_ascii_uppercase(), String::new()),
        };
        let mut check = serde_json::Map::new();
        match word.as_str() {
            "NONE" => {
                if !rest.is_empty() || !ins.flags.is_empty() {
                    return Err(self.error_at(ins, "HEALTHCHECK NONE takes no other arguments"));
                }
                check.insert("Test".into(), serde_json::json!(["NONE"]));
            }
            "CMD" => {
                if rest.is_empty() {
                    return Err(self.error_at(ins, "HEALTHCHECK CMD requires a command"));
                }
                let test: Vec<String> = match super::super::parse::parse_json_array(&rest) {
                    Some(list) => std::iter::once("CMD".to_string()).chain(list).collect(),
                    None => vec!["CMD-SHELL".into(), rest.clone()],
                };
                check.insert("Test".into(), serde_json::json!(test));
                for (name, value) in &ins.flags {
                    let value = value.clone().unwrap_or_default();
                    let (key, parsed) = match name.as_str() {
                        "interval" => ("Interval", duration_ns(&value)),
                        "timeout" => ("Timeout", duration_ns(&value)),
                        "start-period" => ("StartPeriod", duration_ns(&value)),
                        "start-interval" => ("StartInterval", duration_ns(&value)),
                        "retries" => ("Retries", value.parse::<i64>().ok().filter(|r| *r >= 0)),
                        other => {
                            return Err(
                                self.error_at(ins, format!("HEALTHCHECK: unknown flag: --{other}"))
                            )
                        }
                    };
                    let parsed = parsed.ok_or_else(|| {
                        self.error_at(ins, format!("HEALTHCHECK --{name}={value}: invalid value"))
                    })?;
                    if parsed != 0 {
                        check.insert(key.into(), serde_json::json!(parsed));
                    }
                }
            }
            _ => {
                return Err(self.error_at(
                    ins,
                    format!("HEALTHCHECK: unknown type {word:?}: must be CMD or NONE"),
                ));
            }
        }
        let text = format!("HEALTHCHECK {}", go_healthcheck(&check));
        self.metadata_step(ins, text, move |run, _| {
            run.extra.insert("Healthcheck".into(), Value::Object(check));
        })
    }

    pub(in super::super) fn dispatch_shell(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let shell = ins
            .json_args()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.error_at(ins, "SHELL requires the arguments to be in JSON form"))?;
        let text = format!("SHELL [{}]", shell.join(" "));
        self.metadata_step(ins, text, move |run, _| run.shell = Some(shell))
    }

    pub(in super::super) fn dispatch_onbuild(
        &mut self,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let trigger = ins.args.trim().to_string();
        let word = trigger.split_whitespace().next().unwrap_or("");
        match Keyword::parse(word) {
            Some(Keyword::Onbuild) => {
                return Err(
                    self.error_at(ins, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
                )
            }
            Some(k @ (Keyword::From | Keyword::Maintainer)) => {
                return Err(self.error_at(
                    ins,
                    format!("{} isn't allowed as an ONBUILD trigger", k.name()),
                ))
            }
            Some(_) => {}
            None => {
                return Err(self.error_at(
                    ins,
                    format!(
                        "ONBUILD: unknown instruction: {}",
                        word.to_ascii_uppercase()
                    ),
                ))
            }
        }
        let text = format!("ONBUILD {trigger}");
        self.metadata_step(ins, text, move |run, _| {
            run.on_build.get_or_insert_with(Vec::new).push(trigger);
        })
    }

    pub(in super::super) fn dispatch_user(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let user = self.expand(ins, &ins.args)?;
        let text = format!("USER {user}");
        self.metadata_step(ins, text, move |run, _| run.user = Some(user))
    }
}

/// A Go duration (`30s`, `1m30s`, `500ms`, `1h`) in nanoseconds; as
/// Docker's builder, surrounding blanks are ignored and a bare `0` is
/// zero.
pub fn duration_ns(text: &str) -> Option<i64> {
    let text = text.trim();
    if text == "0" {
        return Some(0);
    }
    crate::duration::go_duration_ns(text)
}

/// A duration as Go prints one (`5s`, `1m30s`, `500ms`, `0s`).
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", ns as f64 / 1e6);
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns % 3_600_000_000_000) / 60_000_000_000;
    let s = (ns % 60_000_000_000) as f64 / 1e9;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// The healthcheck as Docker's legacy builder prints it in the history
/// (Go's `%v` of the struct): `&{["CMD-SHELL" "x"] "5s" "0s" "0s" '\x00'}`.
fn go_healthcheck(check: &serde_json::Map<String, Value>) -> String {
    let test: Vec<String> = check
        .get("Test")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let d = |k: &str| go_duration(check.get(k).and_then(Value::as_i64).unwrap_or(0));
    let retries = check.get("Retries").and_then(Value::as_i64).unwrap_or(0);
    format!(
        "&{{{} {:?} {:?} {:?} '\\x{:02x}'}}",
        go_list(&test),
        d("Interval"),
        d("Timeout"),
        d("StartPeriod"),
        retries
    )
}
