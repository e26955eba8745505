//! Which stages build when. A target whose needed stages do not depend
//! on each other (`plan.deps`) builds them at the same time, one thread
//! and one store connection per stage; a stage starts as soon as the
//! stages it names are built. A failing stage cancels the others (their
//! RUN containers are removed as on Ctrl-C) and its error is the build's.
//! A chain of stages builds on the caller's connection, one by one.
//!
//! Threads only where RUN's monitor is exec'd, never a forked copy of a
//! process with other threads (whose locks, SQLite's included, the copy
//! would inherit held): see [`crate::container::monitors_exec`].

use std::sync::mpsc;

use super::error::BuildError;
use super::execute::{Builder, Shared};
use super::plan::has_independent_stages;
use super::state::State;
use crate::store::Store;

/// The built stages' states (by index) and the step counts.
pub(super) struct Built {
    pub built: Vec<Option<State>>,
    pub steps: usize,
    pub cached: usize,
}

/// A stage's state and step counts, or its error.
type StageResult = Result<(Option<State>, usize, usize), BuildError>;

pub(super) fn build_stages(store: &mut Store, shared: &Shared<'_>) -> Result<Built, BuildError> {
    let plan = shared.plan;
    let mut done = Built {
        built: vec![None; plan.stages.len()],
        steps: 0,
        cached: 0,
    };
    if !has_independent_stages(plan) || !crate::container::monitors_exec() {
        for &i in &plan.needed {
            let (state, steps, cached) = build_one(store, shared, done.built.clone(), i)?;
            done.built[i] = state;
            done.steps += steps;
            done.cached += cached;
        }
        return Ok(done);
    }
    let root = store.root().to_path_buf();
    let (tx, rx) = mpsc::channel::<(usize, StageResult)>();
    std::thread::scope(|scope| {
        let mut pending = plan.needed.clone();
        let mut running = 0;
        let mut failure: Option<BuildError> = None;
        loop {
            if failure.is_none() {
                let ready: Vec<usize> = pending
                    .iter()
                    .copied()
                    .filter(|&i| plan.deps[i].iter().all(|&d| done.built[d].is_some()))
                    .collect();
                pending.retain(|i| !ready.contains(i));
                for i in ready {
                    let tx = tx.clone();
                    let built = done.built.clone();
                    let root = root.clone();
                    running += 1;
                    scope.spawn(move || {
                        let result = Store::open(&root)
                            .map_err(BuildError::from)
                            .and_then(|mut store| build_one(&mut store, shared, built, i));
                        if result.is_err() {
                            shared.interrupt.cancel();
                        }
                        let _ = tx.send((i, result));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, result)) = rx.recv() else { break };
            running -= 1;
            match result {
                Ok((state, steps, cached)) => {
                    done.built[i] = state;
                    done.steps += steps;
                    done.cached += cached;
                }
                // The first real error wins over the cancellations it
                // caused.
                Err(e) => {
                    if failure
                        .as_ref()
                        .is_none_or(|f| matches!(f, BuildError::Cancelled))
                    {
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(done),
        }
    })
}

fn build_one(
    store: &mut Store,
    shared: &Shared<'_>,
    built: Vec<Option<State>>,
    index: usize,
) -> StageResult {
    let mut b = Builder::new(store, shared, built);
    b.build_stage(index)?;
    let state = b.built[index].take();
    Ok((state, b.steps, b.cached))
}
