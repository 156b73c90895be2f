//! airtwin's harness: the scenario model and engine, expectations, reports, and the CLI behind
//! the `airtwin` binary. The devices themselves live in `airtwin-simulators`.

pub mod bench;
pub mod cli;
pub mod clients;
pub mod devices;
pub mod differential;
pub mod discovery;
pub mod engine;
pub mod expect;
pub mod key_file;
pub mod netns;
pub mod report;
pub mod scenario;
pub mod serve;
