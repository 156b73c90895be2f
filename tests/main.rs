//! The process-level tests, one module per file, in one test binary: cargo runs test binaries one
//! after another, and within one binary the test threads run the tests side by side. Most of
//! these tests wait on child processes (the built-in suite, pytest, chromium, real peers), so
//! sharing the threads overlaps the waits instead of adding them up, and the crate links one
//! binary instead of six. Filter by module: `cargo test -p airtwin-conformance --test process
//! serve_control::`.

mod conformance;
mod python_plugin;
mod readme;
mod report;
mod repository;
mod serve_control;
