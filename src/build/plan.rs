//! Stages and the build graph: the global ARGs before the first FROM,
//! each stage's FROM (expanded with the global ARGs) and instructions,
//! which stage `--target` names (the last by default), and which stages
//! it needs: those its FROM, `COPY --from` and `RUN --mount=from=` name,
//! transitively. Only those are built, in order. A stage may only name an
//! earlier one: naming itself or a later one is an error.

use std::collections::BTreeSet;

use super::args::BuildArgs;
use super::error::BuildError;
use super::expand::{expand_word, Vars};
use super::parse::{Dockerfile, Instruction, Keyword};

#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    pub from: Instruction,
    /// FROM's image, expanded.
    pub base: String,
    /// `FROM --platform=`, expanded.
    pub platform: Option<String>,
    /// When the base is an earlier stage: its index.
    pub base_stage: Option<usize>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// How progress names it: `builder`, or `stage-N`.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

#[derive(Debug)]
pub struct Plan {
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    pub target: usize,
    /// The stages to build, in order.
    pub needed: Vec<usize>,
    /// For each needed stage, the stages it must wait for (its FROM and
    /// `--from` stages); a stage with none of them in common with another
    /// may build at the same time.
    pub deps: Vec<Vec<usize>>,
}

/// A reference from one stage to another (`--from=`), resolved.
pub enum StageRef {
    Stage(usize),
    Image(String),
}

impl Plan {
    /// Resolves a `--from` value seen in stage `current` at `line`.
    pub fn resolve_from(
        &self,
        value: &str,
        current: usize,
        file: &str,
        line: usize,
    ) -> Result<StageRef, BuildError> {
        let at = |message: String| BuildError::At {
            file: file.to_string(),
            line,
            message,
        };
        let lower = value.to_ascii_lowercase();
        if let Some(s) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            if s.index == current {
                return Err(at(format!("stage {value:?} refers to itself")));
            }
            if s.index > current {
                return Err(at(format!(
                    "stage {value:?} is defined later (line {}): a stage can only use earlier stages",
                    s.from.line
                )));
            }
            return Ok(StageRef::Stage(s.index));
        }
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let n: usize = value
                .parse()
                .map_err(|_| at(format!("invalid stage index {value:?}")))?;
            if n == current {
                return Err(at(format!("stage {n} refers to itself")));
            }
            if n >= self.stages.len() || n > current {
                return Err(at(format!("stage index {n} names no earlier stage")));
            }
            return Ok(StageRef::Stage(n));
        }
        Ok(StageRef::Image(value.to_string()))
    }
}

/// Splits the Dockerfile into stages and picks the ones to build.
pub fn plan(
    dockerfile: &Dockerfile,
    file: &str,
    target: Option<&str>,
    args: &BuildArgs,
) -> Result<Plan, BuildError> {
    let escape = dockerfile.directives.escape;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in &dockerfile.instructions {
        if ins.keyword == Keyword::From {
            stages.push(new_stage(ins, stages.len(), file)?);
            continue;
        }
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(ins.clone()),
            None if ins.keyword == Keyword::Arg => global_args.push(ins.clone()),
            None => {
                return Err(BuildError::At {
                    file: file.to_string(),
                    line: ins.line,
                    message: format!(
                        "{} before the first FROM: a Dockerfile must begin with FROM (only ARG may come before it)",
                        ins.keyword.name()
                    ),
                })
            }
        }
    }
    if stages.is_empty() {
        return Err(BuildError::At {
            file: file.to_string(),
            line: dockerfile.instructions.last().map_or(1, |i| i.line),
            message: "no FROM instruction: a Dockerfile must have at least one FROM".into(),
        });
    }
    // Stage names are unique.
    for (i, s) in stages.iter().enumerate() {
        if let Some(name) = &s.name {
            if let Some(prev) = stages[..i].iter().find(|p| p.name.as_ref() == Some(name)) {
                return Err(BuildError::At {
                    file: file.to_string(),
                    line: s.from.line,
                    message: format!(
                        "duplicate stage name {name:?} (first defined on line {})",
                        prev.from.line
                    ),
                });
            }
        }
    }
    // FROM lines expand with the global ARGs only.
    let globals = args.global_vars(&global_args, escape, file)?;
    let mut plan = Plan {
        global_args,
        stages,
        target: 0,
        needed: vec![],
        deps: vec![],
    };
    for i in 0..plan.stages.len() {
        let from = plan.stages[i].from.clone();
        let (image, platform) = from_parts(&from, &globals, escape, file)?;
        let lower = image.to_ascii_lowercase();
        let base_stage = match plan.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
            Some(s) if s.index == i => {
                return Err(BuildError::At {
                    file: file.to_string(),
                    line: from.line,
                    message: format!("stage {image:?} refers to itself: FROM {image}"),
                })
            }
            Some(s) if s.index > i => {
                return Err(BuildError::At {
                    file: file.to_string(),
                    line: from.line,
                    message: format!(
                        "FROM {image}: stage {image:?} is defined later (line {}): a stage can only build on earlier stages",
                        s.from.line
                    ),
                })
            }
            Some(s) => Some(s.index),
            None => None,
        };
        let stage = &mut plan.stages[i];
        stage.base = image;
        stage.platform = platform;
        stage.base_stage = base_stage;
    }
    plan.target = match target {
        None => plan.stages.len() - 1,
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            plan.stages
                .iter()
                .find(|s| s.name.as_deref() == Some(lower.as_str()))
                .map(|s| s.index)
                .ok_or_else(|| {
                    let names: Vec<String> =
                        plan.stages.iter().filter_map(|s| s.name.clone()).collect();
                    BuildError::NoTarget {
                        file: file.to_string(),
                        target: t.to_string(),
                        stages: if names.is_empty() {
                            "none is named".to_string()
                        } else {
                            names.join(", ")
                        },
                    }
                })?
        }
    };
    plan.needed = needed_stages(&plan, &globals, escape, file)?;
    plan.deps = stage_deps(&plan, &globals, escape, file)?;
    Ok(plan)
}

fn new_stage(ins: &Instruction, index: usize, file: &str) -> Result<Stage, BuildError> {
    let words: Vec<&str> = ins.args.split_whitespace().collect();
    let name = match words.as_slice() {
        [_] => None,
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                return Err(BuildError::At {
                    file: file.to_string(),
                    line: ins.line,
                    message: format!("invalid name for build stage: {name:?}, name can't start with a number or contain symbols"),
                });
            }
            Some(name.to_ascii_lowercase())
        }
        _ => {
            return Err(BuildError::At {
                file: file.to_string(),
                line: ins.line,
                message: "FROM requires either one or three arguments (FROM IMAGE [AS NAME])"
                    .into(),
            })
        }
    };
    for (flag, _) in &ins.flags {
        if flag != "platform" {
            return Err(BuildError::At {
                file: file.to_string(),
                line: ins.line,
                message: format!("unknown flag: --{flag}"),
            });
        }
    }
    Ok(Stage {
        index,
        name,
        from: ins.clone(),
        base: String::new(),
        platform: None,
        base_stage: None,
        instructions: vec![],
    })
}

/// FROM's image and platform, expanded.
fn from_parts(
    from: &Instruction,
    globals: &Vars,
    escape: char,
    file: &str,
) -> Result<(String, Option<String>), BuildError> {
    let at = |message: String| BuildError::At {
        file: file.to_string(),
        line: from.line,
        message,
    };
    let raw = from.args.split_whitespace().next().unwrap_or("");
    let image = expand_word(raw, globals, escape).map_err(|e| at(format!("FROM {raw}: {e}")))?;
    if image.is_empty() {
        return Err(at(format!(
            "base name ({raw}) should not be blank: an ARG it uses is unset (declare it with a default before FROM, or pass --build-arg)"
        )));
    }
    let platform = match from.flag_values("platform").last() {
        Some(Some(p)) => {
            Some(expand_word(p, globals, escape).map_err(|e| at(format!("--platform={p}: {e}")))?)
        }
        _ => None,
    };
    Ok((image, platform))
}

fn needed_stages(
    plan: &Plan,
    globals: &Vars,
    escape: char,
    file: &str,
) -> Result<Vec<usize>, BuildError> {
    let mut needed = BTreeSet::new();
    let mut pending = vec![plan.target];
    while let Some(i) = pending.pop() {
        if !needed.insert(i) {
            continue;
        }
        let stage = &plan.stages[i];
        if let Some(b) = stage.base_stage {
            pending.push(b);
        }
        for ins in &stage.instructions {
            for value in stage_refs(ins) {
                let value = expand_word(&value, globals, escape).unwrap_or(value);
                if let StageRef::Stage(s) = plan.resolve_from(&value, i, file, ins.line)? {
                    pending.push(s);
                }
            }
        }
    }
    Ok(needed.into_iter().collect())
}

/// Each needed stage's direct dependencies. A `--from` whose value uses
/// a variable (which only the stage's own ARGs may settle) waits for
/// every earlier needed stage, as the builds used to run one by one.
fn stage_deps(
    plan: &Plan,
    globals: &Vars,
    escape: char,
    file: &str,
) -> Result<Vec<Vec<usize>>, BuildError> {
    let mut deps = vec![Vec::new(); plan.stages.len()];
    for &i in &plan.needed {
        let stage = &plan.stages[i];
        let mut mine: BTreeSet<usize> = stage.base_stage.into_iter().collect();
        for ins in &stage.instructions {
            for raw in stage_refs(ins) {
                if raw.contains('$') {
                    mine.extend(plan.needed.iter().copied().filter(|&n| n < i));
                    continue;
                }
                let value = expand_word(&raw, globals, escape).unwrap_or(raw);
                if let StageRef::Stage(s) = plan.resolve_from(&value, i, file, ins.line)? {
                    mine.insert(s);
                }
            }
        }
        deps[i] = mine.into_iter().collect();
    }
    Ok(deps)
}

/// Whether two needed stages could build at the same time: neither
/// depends on the other, directly or not.
pub fn has_independent_stages(plan: &Plan) -> bool {
    let n = plan.stages.len();
    // below[i]: every stage i waits for, transitively (deps are earlier).
    let mut below: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for &i in &plan.needed {
        let mut all = BTreeSet::new();
        for &d in &plan.deps[i] {
            all.insert(d);
            all.extend(below[d].iter().copied());
        }
        below[i] = all;
    }
    plan.needed.iter().enumerate().any(|(k, &a)| {
        plan.needed[k + 1..]
            .iter()
            .any(|&b| !below[b].contains(&a) && !below[a].contains(&b))
    })
}

/// The `--from` values of an instruction (COPY/ADD `--from`, RUN
/// `--mount=...,from=`).
pub fn stage_refs(ins: &Instruction) -> Vec<String> {
    let mut out = Vec::new();
    match ins.keyword {
        Keyword::Copy | Keyword::Add => {
            for v in ins.flag_values("from").into_iter().flatten() {
                out.push(v.to_string());
            }
        }
        Keyword::Run => {
            for v in ins.flag_values("mount").into_iter().flatten() {
                for part in v.split(',') {
                    if let Some(f) = part.strip_prefix("from=") {
                        out.push(f.to_string());
                    }
                }
            }
        }
        _ => {}
    }
    out
}
