//! Resolved rules to a kernel filter, with libseccomp (what runc and crun
//! use to read the same profiles): syscall names looked up for every
//! architecture of the filter, one rule per syscall, argument
//! comparisons, actions. libseccomp takes ~25 ms for Docker's profile on
//! three architectures, more than a whole `run --rm`, so programs are
//! cached in the store under a digest of what they were compiled from
//! (see `super::cache_key`): a start reads ~10 KB.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::profile::{Action, Comparison, Flag, Op, Rules};
use super::SeccompError;

/// A compiled filter: classic BPF as the kernel takes it, and the flags
/// to load it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// `struct sock_filter` array, native byte order, 8 bytes each.
    #[serde(with = "base64_bytes")]
    pub bpf: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` bits.
    pub flags: u32,
}

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

impl Program {
    pub fn instruction_count(&self) -> usize {
        self.bpf.len() / 8
    }
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

fn scmp_action(action: Action) -> ScmpAction {
    match action {
        Action::KillProcess => ScmpAction::KillProcess,
        Action::KillThread => ScmpAction::KillThread,
        Action::Trap => ScmpAction::Trap,
        Action::Errno(n) => ScmpAction::Errno(n.into()),
        Action::Trace(n) => ScmpAction::Trace(n),
        Action::Log => ScmpAction::Log,
        Action::Allow => ScmpAction::Allow,
    }
}

fn scmp_compare(c: &Comparison) -> ScmpArgCompare {
    let op = match c.op {
        Op::NotEqual => ScmpCompareOp::NotEqual,
        Op::Less => ScmpCompareOp::Less,
        Op::LessOrEqual => ScmpCompareOp::LessOrEqual,
        Op::Equal => ScmpCompareOp::Equal,
        Op::GreaterOrEqual => ScmpCompareOp::GreaterEqual,
        Op::Greater => ScmpCompareOp::Greater,
        // Docker's MASKED_EQ: `value` is the mask, `valueTwo` the datum.
        Op::MaskedEqual => ScmpCompareOp::MaskedEqual(c.value),
    };
    let datum = if c.op == Op::MaskedEqual {
        c.value_two
    } else {
        c.value
    };
    ScmpArgCompare::new(c.index, op, datum)
}

fn compile_error(
    what: impl std::fmt::Display,
) -> impl Fn(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.to_string();
    move |e| SeccompError::Compile(format!("{what}: {e}"))
}

/// Compiles `rules` with libseccomp. Syscall names this libseccomp does
/// not know are skipped (as runc and crun do): they get the default
/// action.
pub fn compile(rules: &Rules) -> Result<Program, SeccompError> {
    let mut ctx = ScmpFilterContext::new(scmp_action(rules.default_action))
        .map_err(compile_error("creating the filter"))?;
    // A binary tree of syscall numbers rather than a chain: the kernel
    // runs every syscall number through a new filter to find those it
    // always allows (its action cache), which takes ~2 ms for a chain
    // of Docker's ~400 syscalls on three architectures, ~0.3 ms for a
    // tree; and a filtered syscall takes a few jumps, not hundreds.
    ctx.set_ctl_optimize(2)
        .map_err(compile_error("choosing a binary tree"))?;
    for arch in &rules.arches {
        let arch = ScmpArch::from_str(arch).map_err(compile_error(arch))?;
        if !ctx
            .is_arch_present(arch)
            .map_err(compile_error("architecture"))?
        {
            ctx.add_arch(arch)
                .map_err(compile_error(format!("architecture {arch:?}")))?;
        }
    }
    for rule in &rules.rules {
        // libseccomp refuses a rule that only repeats the default.
        if rule.action == rules.default_action {
            continue;
        }
        let action = scmp_action(rule.action);
        let compares: Vec<ScmpArgCompare> = rule.args.iter().map(scmp_compare).collect();
        // Comparisons of one argument cannot all hold: each is a rule of
        // its own (any of them), as runc reads them.
        let mut indices: Vec<u32> = rule.args.iter().map(|a| a.index).collect();
        indices.sort_unstable();
        indices.dedup();
        let separate = indices.len() < rule.args.len();
        for name in &rule.names {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                tracing::debug!("seccomp: syscall {name:?} is unknown to libseccomp; skipped");
                continue;
            };
            let added = if compares.is_empty() {
                ctx.add_rule(action, syscall)
            } else if separate {
                compares
                    .iter()
                    .try_for_each(|c| {
                        ctx.add_rule_conditional(action, syscall, std::slice::from_ref(c))
                            .map(drop)
                    })
                    .map(|()| &mut ctx)
            } else {
                ctx.add_rule_conditional(action, syscall, &compares)
            };
            added.map_err(compile_error(format!("syscall {name}")))?;
        }
    }
    let bpf = export(&ctx)?;
    if bpf.is_empty() || bpf.len() % 8 != 0 {
        return Err(SeccompError::Compile(format!(
            "libseccomp produced {} bytes, not a filter",
            bpf.len()
        )));
    }
    if bpf.len() / 8 > MAX_INSTRUCTIONS {
        return Err(SeccompError::Compile(format!(
            "the filter has {} instructions, more than the kernel's {MAX_INSTRUCTIONS}",
            bpf.len() / 8
        )));
    }
    Ok(Program {
        bpf,
        flags: compile_flags(rules),
    })
}

/// The `SECCOMP_FILTER_FLAG_*` bits for `rules`' flags.
fn compile_flags(rules: &Rules) -> u32 {
    rules
        .flags
        .iter()
        .map(|f| match f {
            Flag::Log => libc::SECCOMP_FILTER_FLAG_LOG as u32,
            Flag::SpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32,
        })
        .fold(0, |a, b| a | b)
}

/// libseccomp 2.5 exports to a descriptor only: a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let fd = memfd_create(c"strata-seccomp", MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Compile(format!("memfd_create: {e}")))?;
    ctx.export_bpf(&fd)
        .map_err(compile_error("exporting the filter"))?;
    let mut file = std::fs::File::from(fd);
    let mut bpf = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bpf))
        .map_err(|e| SeccompError::Compile(format!("reading the exported filter: {e}")))?;
    Ok(bpf)
}

/// The program cached under `key` in `dir`, if there is a sound one.
/// A cache file is the SHA-256 of the rest, the filter flags (u32, little
/// endian), then the program.
pub fn read_cached(dir: &Path, key: &str) -> Option<Program> {
    let bytes = std::fs::read(dir.join(key)).ok()?;
    let (digest, rest) = bytes.split_at_checked(32)?;
    let (flags, bpf) = rest.split_at_checked(4)?;
    if bpf.is_empty() || bpf.len() % 8 != 0 || Sha256::digest(rest).as_slice() != digest {
        return None;
    }
    Some(Program {
        bpf: bpf.to_vec(),
        flags: u32::from_le_bytes(flags.try_into().ok()?),
    })
}

/// Adds `program` to the cache `dir` under `key`: written beside its
/// final name and renamed there, so a reader sees all or nothing.
pub fn store_cached(dir: &Path, key: &str, program: &Program) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut rest = program.flags.to_le_bytes().to_vec();
    rest.extend_from_slice(&program.bpf);
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&Sha256::digest(&rest))?;
            f.write_all(&rest)
        })
        .and_then(|()| std::fs::rename(&tmp, dir.join(key)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::super::profile::Rule;
    use super::*;

    fn rules() -> Rules {
        Rules {
            default_action: Action::Allow,
            arches: vec!["SCMP_ARCH_X86_64".into(), "SCMP_ARCH_X86".into()],
            flags: vec![Flag::Log],
            rules: vec![
                Rule {
                    names: vec!["mkdir".into(), "mkdirat".into(), "no_such_syscall".into()],
                    action: Action::Errno(28),
                    args: vec![],
                },
                Rule {
                    names: vec!["personality".into()],
                    action: Action::Errno(1),
                    args: vec![
                        Comparison {
                            index: 0,
                            op: Op::Equal,
                            value: 1,
                            value_two: 0,
                        },
                        Comparison {
                            index: 0,
                            op: Op::Equal,
                            value: 2,
                            value_two: 0,
                        },
                    ],
                },
            ],
        }
    }

    #[test]
    fn compiles_and_caches() {
        let program = compile(&rules()).unwrap();
        assert!(program.instruction_count() > 4);
        assert_eq!(program.flags, libc::SECCOMP_FILTER_FLAG_LOG as u32);
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("seccomp");
        assert_eq!(read_cached(&cache, "k"), None);
        store_cached(&cache, "k", &program).unwrap();
        assert_eq!(read_cached(&cache, "k"), Some(program.clone()));
        let file = cache.join("k");
        let mut bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len(), 32 + 4 + program.bpf.len());
        // A damaged file is not used.
        bytes[40] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(read_cached(&cache, "k"), None);
        std::fs::write(&file, b"short").unwrap();
        assert_eq!(read_cached(&cache, "k"), None);
    }

    #[test]
    fn program_travels_as_json() {
        let program = compile(&rules()).unwrap();
        let json = serde_json::to_string(&program).unwrap();
        assert_eq!(serde_json::from_str::<Program>(&json).unwrap(), program);
    }
}
