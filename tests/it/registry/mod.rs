//! Registry tests (issue 4) against the real thing: Debian's `docker-registry`
//! (the reference distribution registry) started per test on a free
//! 127.0.0.1 port, skopeo as the interop oracle, and a loopback proxy
//! that injects faults. Every test gets its own store root, Docker config
//! directory and registry; everything started is killed by pid on drop.
//!
//! Outside CI a test whose tools are missing skips with a message; with
//! `CI=true` it fails instead.

pub mod harness;
pub mod images;
mod proxy;
mod token;

mod auth;
mod crash;
mod faults;
mod hangs;
mod interop;
mod pull_push;
