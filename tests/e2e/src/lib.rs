//! End-to-end tests of pyxis: real processes on loopback, driven over HTTP and the CLI.
//!
//! This library is intentionally empty; the tests are one binary, `tests/e2e/main.rs`, with
//! one module per area (`store_cluster`, `store_faults`, `store_input`, `cli`). Starting and
//! stopping processes, ports and `eventually()` live in the `harness` crate.
//!
//! Run them with `cargo build --workspace --bins && cargo nextest run -p e2e` (the binaries
//! must be built first: `CARGO_BIN_EXE_*` is not available outside the binary's package).
