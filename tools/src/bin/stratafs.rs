//! stratafs: mount a union of plain directories (fuse-overlayfs options).
//! Forks before anything else; the parent exits 0 once the mount is ready,
//! or 1 with the child's one-line error. SIGTERM/SIGINT unmount cleanly.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use strata_fs::{load_dir_layer, MountConfig};
use strata_tools::stratafs::{parse, Options};
use strata_tools::sys::{fork_single_threaded, pipe, Forked};

fn main() {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("stratafs: {e}");
            eprintln!(
                "usage: stratafs [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W] MOUNTPOINT"
            );
            std::process::exit(2);
        }
    };
    if opts.foreground {
        if opts.debug {
            tracing_subscriber::fmt()
                .with_env_filter("debug")
                .with_writer(std::io::stderr)
                .init();
        }
        if let Err(e) = run(&opts, || {}) {
            eprintln!("stratafs: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let (read_end, write_end) = match pipe() {
        Ok(p) => p,
        Err(e) => fail(&format!("pipe: {e}")),
    };
    match fork_single_threaded() {
        Err(e) => fail(&format!("fork: {e}")),
        Ok(Forked::Parent(_)) => {
            drop(write_end);
            parent_wait(read_end)
        }
        Ok(Forked::Child) => {
            drop(read_end);
            daemon(&opts, write_end)
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("stratafs: {msg}");
    std::process::exit(1);
}

/// Exit 0 on the child's "ready", else print its error and exit 1.
fn parent_wait(read_end: OwnedFd) -> ! {
    let mut msg = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut msg);
    if msg == "ready\n" {
        std::process::exit(0);
    }
    let msg = msg.trim();
    fail(if msg.is_empty() {
        "daemon exited before the mount was ready"
    } else {
        msg
    })
}

fn daemon(opts: &Options, write_end: OwnedFd) -> ! {
    let _ = nix::unistd::setsid();
    let mut pipe = Some(std::fs::File::from(write_end));
    let result = run(opts, || {
        if let Some(mut p) = pipe.take() {
            let _ = p.write_all(b"ready\n");
        }
        detach_stdio();
    });
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            if let Some(mut p) = pipe.take() {
                let _ = write!(p, "{e:#}");
            }
            std::process::exit(1)
        }
    }
}

fn detach_stdio() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in [0, 1, 2] {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}

fn run(opts: &Options, ready: impl FnOnce()) -> anyhow::Result<()> {
    let mut layers = Vec::new();
    for dir in opts.lowerdirs.iter().rev() {
        layers.push(load_dir_layer(dir).context("loading lowerdir")?);
    }
    let mut config = MountConfig::new(layers);
    config.upper = opts.upperdir.clone();
    config.work = opts.workdir.clone();
    config.read_only = opts.read_only || opts.upperdir.is_none();
    config.allow_other = opts.allow_other || nix::unistd::geteuid().is_root();
    config.nodev = opts.nodev;
    config.nosuid = opts.nosuid;
    config.passthrough = !opts.no_passthrough;
    config.redirect_dir = opts.redirect_dir;
    config.fsname = opts.fsname.clone().unwrap_or_else(|| "stratafs".into());
    let signals = block_signals()?;
    let mountpoint = opts.mountpoint.clone();
    std::thread::spawn(move || unmount_on_signal(signals, &mountpoint));
    strata_fs::serve(config, &opts.mountpoint, ready)?;
    Ok(())
}

fn block_signals() -> anyhow::Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.thread_block().context("blocking signals")?;
    Ok(set)
}

fn unmount_on_signal(set: SigSet, mountpoint: &Path) {
    if set.wait().is_ok() {
        let _ = strata_fs::unmount(mountpoint);
    }
}
