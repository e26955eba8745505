//! Docker's seccomp profile format (what `docker run --security-opt
//! seccomp=PROFILE.json` reads, moby's `profiles/seccomp`), and its
//! resolution for one container on this host: the rules whose
//! `includes`/`excludes` (capabilities, architecture, kernel version)
//! select them, with every action, operator, architecture and flag
//! checked. Resolution is pure: [`Target`] says what the host and the
//! container are; the result ([`Rules`]) is what gets compiled and what
//! the compiled filter is cached under.

use serde::{Deserialize, Deserializer, Serialize};

use super::SeccompError;

/// A profile as Docker's JSON has it. Unknown fields are ignored and
/// `null` reads as empty, as Go's decoder does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default, deserialize_with = "nullable")]
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub architectures: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arch_map: Vec<ArchMap>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub flags: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub listener_path: String,
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<SyscallRule>,
}

/// An architecture and the ones its filter also covers (x86-64: x86, x32).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchMap {
    pub architecture: String,
    #[serde(rename = "subArchitectures", default, deserialize_with = "nullable")]
    pub sub_architectures: Vec<String>,
}

/// One entry of `syscalls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<ArgRule>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub comment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Condition>,
}

/// A comparison of one syscall argument: `args[index] OP value`, or for
/// `SCMP_CMP_MASKED_EQ`, `args[index] & value == value_two`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgRule {
    pub index: u32,
    pub value: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value_two: u64,
    pub op: String,
}

/// When a rule applies: all of `caps` in the container's bounding set,
/// the host's architecture among `arches` (Docker's names: amd64, arm64,
/// x86, ...), the kernel at least `min_kernel` ("major.minor").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub caps: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// `null` as the type's default, as Go reads it into a slice or string.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What a filter does with a syscall (libseccomp's `SCMP_ACT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    Trace(u16),
    Log,
    Allow,
}

/// An argument comparison (libseccomp's `SCMP_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    NotEqual,
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
    MaskedEqual,
}

/// A filter flag strata honours when it loads the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Flag {
    /// `SECCOMP_FILTER_FLAG_LOG`: log every action but allow.
    Log,
    /// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: no speculative-store-bypass mitigation.
    SpecAllow,
}

/// One resolved argument comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub index: u32,
    pub op: Op,
    pub value: u64,
    pub value_two: u64,
}

/// One resolved rule: `action` for each of `names` whose arguments
/// match `args` (all of them, or, when two compare the same argument,
/// any of them, as runc reads a profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub args: Vec<Comparison>,
}

/// A profile resolved for one container on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rules {
    pub default_action: Action,
    /// `SCMP_ARCH_*` names the filter covers besides the native one.
    pub arches: Vec<String>,
    pub flags: Vec<Flag>,
    pub rules: Vec<Rule>,
}

/// What resolution depends on: the host and the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host's architecture in Docker's names (`amd64`, `arm64`, ...).
    pub arch: &'static str,
    /// The same as libseccomp names it (`SCMP_ARCH_X86_64`, ...).
    pub seccomp_arch: &'static str,
    /// The running kernel's version and major revision (6.18 -> (6, 18)).
    pub kernel: (u64, u64),
    /// The container's bounding set, `CAP_` names.
    pub caps: Vec<String>,
}

/// The architecture strata runs on, as Docker and libseccomp name it.
pub fn native_arch() -> (&'static str, &'static str) {
    if cfg!(target_arch = "x86_64") {
        ("amd64", "SCMP_ARCH_X86_64")
    } else if cfg!(target_arch = "x86") {
        ("x86", "SCMP_ARCH_X86")
    } else if cfg!(target_arch = "aarch64") {
        ("arm64", "SCMP_ARCH_AARCH64")
    } else if cfg!(target_arch = "arm") {
        ("arm", "SCMP_ARCH_ARM")
    } else if cfg!(target_arch = "riscv64") {
        ("riscv64", "SCMP_ARCH_RISCV64")
    } else if cfg!(target_arch = "s390x") {
        ("s390x", "SCMP_ARCH_S390X")
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        ("ppc64le", "SCMP_ARCH_PPC64LE")
    } else if cfg!(target_arch = "powerpc64") {
        ("ppc64", "SCMP_ARCH_PPC64")
    } else if cfg!(target_arch = "loongarch64") {
        ("loong64", "SCMP_ARCH_LOONGARCH64")
    } else {
        ("", "SCMP_ARCH_NATIVE")
    }
}

/// "6.18.44-fc" -> (6, 18), as moby reads a kernel release.
pub fn parse_kernel_release(release: &str) -> Option<(u64, u64)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The `minKernel` form: exactly "major.minor", not 0.0.
fn parse_min_kernel(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid kernel version {text:?}, expected \"<kernel>.<major>\"");
    let (major, minor) = text.split_once('.').ok_or_else(bad)?;
    let major: u8 = major.parse().map_err(|_| bad())?;
    let minor: u8 = minor.parse().map_err(|_| bad())?;
    if major == 0 && minor == 0 {
        return Err(bad());
    }
    Ok((major.into(), minor.into()))
}

fn parse_action(name: &str, errno_ret: Option<u32>) -> Result<Action, String> {
    let data = || -> Result<u16, String> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(n) if n <= 4095 => Ok(n as u16),
            Some(n) => Err(format!("errnoRet {n} is out of range (0-4095)")),
        }
    };
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_ERRNO" => Action::Errno(data()?),
        "SCMP_ACT_TRACE" => Action::Trace(data()?),
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_NOTIFY" => return Err("action SCMP_ACT_NOTIFY is not supported by strata".into()),
        "" => return Err("missing action".into()),
        other => return Err(format!("unknown action {other:?}")),
    })
}

fn parse_op(name: &str) -> Result<Op, String> {
    Ok(match name {
        "SCMP_CMP_NE" => Op::NotEqual,
        "SCMP_CMP_LT" => Op::Less,
        "SCMP_CMP_LE" => Op::LessOrEqual,
        "SCMP_CMP_EQ" => Op::Equal,
        "SCMP_CMP_GE" => Op::GreaterOrEqual,
        "SCMP_CMP_GT" => Op::Greater,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEqual,
        other => return Err(format!("unknown comparison operator {other:?}")),
    })
}

/// The `SCMP_ARCH_*` names libseccomp knows.
const ARCHES: &[&str] = &[
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_SH",
];

fn check_arch(name: &str) -> Result<String, String> {
    if ARCHES.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(format!("unknown architecture {name:?}"))
    }
}

fn parse_flag(name: &str) -> Result<Option<Flag>, String> {
    Ok(match name {
        "SECCOMP_FILTER_FLAG_LOG" => Some(Flag::Log),
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => Some(Flag::SpecAllow),
        // The filter is loaded by a single-threaded process.
        "SECCOMP_FILTER_FLAG_TSYNC" => None,
        other => return Err(format!("unsupported flag {other:?}")),
    })
}

impl Condition {
    /// Whether every part of the condition holds for `target`.
    fn holds(&self, target: &Target) -> Result<Vec<bool>, String> {
        let mut parts = Vec::new();
        if !self.arches.is_empty() {
            parts.push(self.arches.iter().any(|a| a == target.arch));
        }
        if !self.caps.is_empty() {
            parts.push(self.caps.iter().all(|c| target.caps.contains(c)));
        }
        if let Some(min) = self.min_kernel.as_deref().filter(|m| !m.is_empty()) {
            parts.push(target.kernel >= parse_min_kernel(min)?);
        }
        Ok(parts)
    }
}

impl SyscallRule {
    /// Whether the rule is part of the filter for `target`: every part
    /// of `includes` holds, and no part of `excludes` does (an excluded
    /// capability list excludes if any of its capabilities is held).
    fn selected(&self, target: &Target) -> Result<bool, String> {
        if let Some(ex) = &self.excludes {
            if ex.arches.iter().any(|a| a == target.arch)
                || ex.caps.iter().any(|c| target.caps.contains(c))
            {
                return Ok(false);
            }
            if let Some(min) = ex.min_kernel.as_deref().filter(|m| !m.is_empty()) {
                if target.kernel >= parse_min_kernel(min)? {
                    return Ok(false);
                }
            }
        }
        match &self.includes {
            Some(inc) => Ok(inc.holds(target)?.into_iter().all(|b| b)),
            None => Ok(true),
        }
    }
}

/// Resolves `profile` for `target`; `None` if it asks for no filter
/// (no default action and no rules, as Docker reads it).
pub fn resolve(profile: &Profile, target: &Target) -> Result<Option<Rules>, SeccompError> {
    let invalid = |reason: String| SeccompError::Invalid(reason);
    if profile.default_action.is_empty() && profile.syscalls.is_empty() {
        return Ok(None);
    }
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err(invalid(
            "both 'architectures' and 'archMap' are specified, use either".into(),
        ));
    }
    if !profile.listener_path.is_empty() {
        return Err(invalid(
            "listenerPath is not supported by strata (no SCMP_ACT_NOTIFY)".into(),
        ));
    }
    let default_action = parse_action(&profile.default_action, profile.default_errno_ret)
        .map_err(|e| invalid(format!("defaultAction: {e}")))?;
    let mut arches = Vec::new();
    for a in &profile.architectures {
        arches.push(check_arch(a).map_err(invalid)?);
    }
    for entry in &profile.arch_map {
        check_arch(&entry.architecture).map_err(invalid)?;
        for sub in &entry.sub_architectures {
            check_arch(sub).map_err(invalid)?;
        }
        if entry.architecture == target.seccomp_arch {
            arches.push(entry.architecture.clone());
            arches.extend(entry.sub_architectures.iter().cloned());
        }
    }
    let mut flags = Vec::new();
    for f in &profile.flags {
        if let Some(flag) = parse_flag(f).map_err(invalid)? {
            flags.push(flag);
        }
    }
    let mut rules = Vec::new();
    for (i, rule) in profile.syscalls.iter().enumerate() {
        let at = |e: String| invalid(format!("syscalls[{i}]: {e}"));
        if !rule.name.is_empty() && !rule.names.is_empty() {
            return Err(at(
                "both 'name' and 'names' are specified, use either".into()
            ));
        }
        let action = parse_action(&rule.action, rule.errno_ret).map_err(at)?;
        let mut args = Vec::new();
        for arg in &rule.args {
            if arg.index > 5 {
                return Err(at(format!(
                    "argument index {} is out of range (0-5)",
                    arg.index
                )));
            }
            args.push(Comparison {
                index: arg.index,
                op: parse_op(&arg.op).map_err(at)?,
                value: arg.value,
                value_two: arg.value_two,
            });
        }
        if rule.names.iter().any(String::is_empty) {
            return Err(at("an empty syscall name".into()));
        }
        if !rule.selected(target).map_err(at)? {
            continue;
        }
        let names: Vec<String> = if rule.name.is_empty() {
            rule.names.clone()
        } else {
            vec![rule.name.clone()]
        };
        if names.is_empty() {
            continue;
        }
        rules.push(Rule {
            names,
            action,
            args,
        });
    }
    Ok(Some(Rules {
        default_action,
        arches,
        flags,
        rules,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target {
            arch: "amd64",
            seccomp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
            caps: caps.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn parse(json: &str) -> Profile {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn includes_and_excludes_select_rules() {
        let p = parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},{"architecture":"SCMP_ARCH_RISCV64","subArchitectures":null}],
            "syscalls":[
             {"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
             {"names":["b"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}},
             {"names":["c"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}},
             {"names":["d"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}},
             {"names":["e"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"7.0"}},
             {"name":"f","action":"SCMP_ACT_ERRNO","errnoRet":38,"excludes":{"minKernel":"6.2"}}
            ]}"#,
        );
        let names = |r: &Rules| {
            r.rules
                .iter()
                .flat_map(|r| r.names.clone())
                .collect::<Vec<_>>()
        };
        let plain = resolve(&p, &target(&["CAP_CHOWN"])).unwrap().unwrap();
        assert_eq!(names(&plain), ["b", "d", "f"]);
        assert_eq!(plain.default_action, Action::Errno(1));
        assert_eq!(plain.arches, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
        assert_eq!(plain.rules[2].action, Action::Errno(38));
        let admin = resolve(&p, &target(&["CAP_SYS_ADMIN"])).unwrap().unwrap();
        assert_eq!(names(&admin), ["a", "d", "f"]);
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        let err = |json: &str| resolve(&parse(json), &target(&[])).unwrap_err().to_string();
        assert!(err(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#)
            .contains("unknown action \"SCMP_ACT_NOPE\""));
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_BAD"}]}"#
        )
        .contains("syscalls[0]: unknown action"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#).contains("out of range"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}"#).contains("unknown comparison operator"));
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#)
                .contains("unknown architecture")
        );
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#).contains("either"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}"#).contains("either"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).contains("not supported"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"4"}}]}"#).contains("invalid kernel version"));
    }

    #[test]
    fn an_empty_profile_is_no_filter() {
        assert_eq!(resolve(&parse("{}"), &target(&[])).unwrap(), None);
    }

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v973"), Some((6, 18)));
        assert_eq!(parse_kernel_release("3.12-1-amd64"), Some((3, 12)));
        assert_eq!(parse_kernel_release("x"), None);
    }
}
