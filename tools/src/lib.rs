//! strata-tools: small standalone binaries (see src/bin/) and the little
//! they share: option parsing for `stratafs`, daemonising.
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod stratafs;
#[allow(unsafe_code)]
pub mod sys;
