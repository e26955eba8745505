//! save/load (docker-archive, OCI layout), import/export.
