//! The CPU a container starts on. A start is a chain of short hand-offs
//! between the monitor, its FUSE threads and the container's first
//! process; on one CPU they follow each other without cross-CPU wake-ups,
//! which cost up to a millisecond each where idle virtual CPUs must be
//! woken (measured: 25.9 ms median with a pause between starts, 17.0 ms
//! on one CPU). The monitor keeps to the CPU it starts on until the
//! container runs; the first process gets the original CPUs back before
//! it execs, the monitor's threads once the start is reported.

use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Keeps the calling thread (and what it forks or spawns from now on) to
/// the CPU it runs on; returns the CPUs it had, or `None` if nothing
/// changed.
pub fn pin_to_this_cpu() -> Option<CpuSet> {
    let original = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let mut one = CpuSet::new();
    one.set(sched_getcpu().ok()?).ok()?;
    sched_setaffinity(Pid::from_raw(0), &one).ok()?;
    Some(original)
}

/// Gives the calling thread its CPUs back.
pub fn restore(original: &CpuSet) -> nix::Result<()> {
    sched_setaffinity(Pid::from_raw(0), original)
}

/// Gives every thread of this process its CPUs back.
pub fn restore_all_threads(original: &CpuSet) {
    let _ = restore(original);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            let _ = sched_setaffinity(Pid::from_raw(tid), original);
        }
    }
}
