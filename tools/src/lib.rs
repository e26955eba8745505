//! strata-tools: small standalone binaries (see src/bin/).
