//! Health checks, run by the monitor while the container runs (Docker's
//! health monitor): every interval (30 s unless set) a probe runs the
//! check's command in the container as `exec` does, killed after the
//! timeout (30 s unless set). Exit 0 makes the container `healthy` and
//! clears the failing streak; anything else adds to the streak, except
//! while the start period lasts and the container was never healthy, and
//! `retries` failures in a row (3 unless set) make it `unhealthy`. The
//! state (`State.Health`: status, streak, the last five probes) is in the
//! record; each change of status is a `health_status: STATUS` event.
//! When the container stops, its status becomes `unhealthy` (Docker's
//! rule, without an event); a new start makes it `starting` again,
//! keeping the log.
//!
//! The probe itself is the exec path's (`crate::container::exec`), handed
//! in by the verb that starts the monitor, so this room imports no verb.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::container::events::record_container_event;
use crate::container::records::{get_container, update_state, Container};
use crate::container::spec::{now_rfc3339, Health, HealthConfig, HealthLog};
use crate::store::Store;

/// Runs a command in the running container: (exit code, output).
pub type Probe = fn(&Store, &str, &[String], Duration) -> (i32, String);

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Docker keeps the last five results.
const LOG_ENTRIES: usize = 5;

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// The running check; stopped (and its thread joined) on drop.
pub struct HealthLoop {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HealthLoop {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn nanos(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

/// Starts the container's check, if it has one: its health is
/// `starting` from now.
pub fn start_health_loop(store: &Store, container: &Container, probe: Probe) -> Option<HealthLoop> {
    let config = container.spec.healthcheck.clone()?;
    let argv = config.probe_argv()?;
    // Docker's: starting again, the streak cleared, the last run's log
    // kept.
    let _ = update_state(store, &container.id, |s| {
        let log = s.health.take().map(|h| h.log).unwrap_or_default();
        s.health = Some(Health {
            status: STARTING.into(),
            failing_streak: 0,
            log,
        });
        Ok(())
    });
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let root = store.root().to_path_buf();
    let id = container.id.clone();
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            if let Ok(store) = Store::open(&root) {
                run_checks(&store, &id, &config, &argv, probe, &flag);
            }
        })
        .ok()?;
    Some(HealthLoop {
        stop,
        thread: Some(thread),
    })
}

/// The container's check has stopped with the container: its status is
/// `unhealthy`, as Docker sets it then ("for compatibility reasons", its
/// `CloseMonitorChannel`), streak and log kept, no event.
pub fn mark_stopped(store: &Store, id: &str) {
    let _ = update_state(store, id, |s| {
        if let Some(health) = s.health.as_mut() {
            health.status = UNHEALTHY.into();
        }
        Ok(())
    });
}

/// Sleeps `d` unless stopped first; whether it was stopped.
fn stopped_within(stop: &(Mutex<bool>, Condvar), d: Duration) -> bool {
    let (lock, wake) = stop;
    let Ok(guard) = lock.lock() else {
        return true;
    };
    match wake.wait_timeout_while(guard, d, |stopped| !*stopped) {
        Ok((guard, _)) => *guard,
        Err(_) => true,
    }
}

fn run_checks(
    store: &Store,
    id: &str,
    config: &HealthConfig,
    argv: &[String],
    probe: Probe,
    stop: &(Mutex<bool>, Condvar),
) {
    let interval = nanos(config.interval, DEFAULT_INTERVAL);
    let timeout = nanos(config.timeout, DEFAULT_TIMEOUT);
    let start_period = nanos(config.start_period, Duration::ZERO);
    let retries = if config.retries > 0 {
        config.retries as u32
    } else {
        DEFAULT_RETRIES
    };
    let began = Instant::now();
    while !stopped_within(stop, interval) {
        let start = now_rfc3339();
        let (exit_code, output) = probe(store, id, argv, timeout);
        if stopped_within(stop, Duration::ZERO) {
            // The container ended meanwhile: not its health's doing.
            return;
        }
        let result = HealthLog {
            start,
            end: now_rfc3339(),
            exit_code,
            output,
        };
        let in_start_period = began.elapsed() < start_period;
        let changed = update_state(store, id, |s| {
            let health = s.health.get_or_insert_with(Health::default);
            Ok(record_result(health, result, in_start_period, retries))
        });
        if let (Ok(Some(status)), Ok(container)) = (changed, get_container(store, id)) {
            record_container_event(store, &container, &format!("health_status: {status}"), &[]);
        }
    }
}

/// Adds a probe's result to `health` as Docker does; the new status if
/// it changed.
pub fn record_result(
    health: &mut Health,
    result: HealthLog,
    in_start_period: bool,
    retries: u32,
) -> Option<String> {
    let before = health.status.clone();
    if result.exit_code == 0 {
        health.failing_streak = 0;
        health.status = HEALTHY.into();
    } else if !(in_start_period && health.status == STARTING) {
        health.failing_streak += 1;
        if health.failing_streak >= retries {
            health.status = UNHEALTHY.into();
        }
    }
    health.log.push(result);
    let extra = health.log.len().saturating_sub(LOG_ENTRIES);
    health.log.drain(..extra);
    (health.status != before).then(|| health.status.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i32) -> HealthLog {
        HealthLog {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn streaks_and_statuses_as_docker() {
        let mut h = Health {
            status: STARTING.into(),
            ..Default::default()
        };
        // Failures in the start period do not count.
        assert_eq!(record_result(&mut h, result(1), true, 2), None);
        assert_eq!(h.failing_streak, 0);
        assert_eq!(record_result(&mut h, result(1), false, 2), None);
        assert_eq!(
            record_result(&mut h, result(1), false, 2).as_deref(),
            Some(UNHEALTHY)
        );
        assert_eq!(
            record_result(&mut h, result(0), false, 2).as_deref(),
            Some(HEALTHY)
        );
        assert_eq!(h.failing_streak, 0);
        for _ in 0..4 {
            record_result(&mut h, result(0), false, 2);
        }
        assert_eq!(h.log.len(), 5);
        // Once healthy, the start period no longer hides failures.
        record_result(&mut h, result(1), true, 2);
        assert_eq!(h.failing_streak, 1);
    }
}
