//! JUnit XML (quick-junit): one test case per scenario, the failures in the message and body.

use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::engine::ScenarioResult;

pub fn to_xml(results: &[ScenarioResult]) -> String {
    let mut report = Report::new("airtwin");
    let mut suite = TestSuite::new("scenarios");
    for r in results {
        let status = if r.passed {
            TestCaseStatus::success()
        } else {
            let kind = if r.error.is_some() {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_message(r.first_problem().unwrap_or_default());
            let mut body: Vec<String> = r
                .failures
                .iter()
                .map(|f| {
                    format!(
                        "{}\n  expected: {}\n  actual:   {}",
                        f.what, f.expected, f.actual
                    )
                })
                .collect();
            body.push(format!("replay with --seed {}", r.seed));
            s.set_description(body.join("\n"));
            s
        };
        let mut case = TestCase::new(r.name.clone(), status);
        case.set_classname(
            r.file
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenarios".into()),
        );
        case.set_time(r.duration);
        let out: String = r
            .clients
            .iter()
            .map(|(n, o)| format!("== {n}\n{}{}", o.stdout, o.stderr))
            .collect();
        case.set_system_out_lossy(out);
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}

pub fn write(path: &Path, results: &[ScenarioResult]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, to_xml(results))
}
