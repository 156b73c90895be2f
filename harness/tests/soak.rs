//! The short soak CI runs (`airtwin bench soak` for a few seconds, docs/performance.md gives the
//! longer run): every device kind under mixed load with a fault plan active, then no panic,
//! every device answers, file descriptors back, memory flat, transcript complete. A process of
//! its own, so the descriptors and memory it counts are the soak's alone.

use std::time::Duration;

use airtwin::bench::soak::{run, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_kind_survives_a_short_soak_with_faults() {
    let report = run(Options {
        duration: Duration::from_secs(4),
        ..Options::default()
    })
    .await
    .expect("the soak runs");
    report.print();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.kinds.len(), 5, "{:?}", report.kinds);
    let faulted: u64 = report
        .kinds
        .values()
        .map(|k| k.faulted + k.reconnects)
        .sum();
    assert!(faulted > 0, "the fault plan acted: {:?}", report.kinds);
    assert!(report.kinds["spotify-ap"].logins > 0, "{:?}", report.kinds);
}
