//! Reports of a run: one line per scenario on the console, JUnit XML, per-scenario
//! transcripts, the HTML page, and pcapng captures.

pub mod html;
pub mod junit;
pub mod pcap;
pub mod transcript;

use crate::engine::ScenarioResult;

/// `PASS  name  1.234s` or `FAIL  name  1.234s  what: expected X, got Y`.
pub fn line(r: &ScenarioResult) -> String {
    let status = if r.passed { "PASS" } else { "FAIL" };
    let mut s = format!("{status}  {}  {:.3}s", r.name, r.duration.as_secs_f64());
    if let Some(p) = r.first_problem() {
        s.push_str("  ");
        s.push_str(&p);
    }
    if !r.passed {
        s.push_str(&format!("  (seed {})", r.seed));
    }
    s
}
