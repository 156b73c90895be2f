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

/// Errors of [`merge`].
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("reading {0}: {1}")]
    Read(std::path::PathBuf, std::io::Error),
    #[error("{0} is not JUnit XML: {1}")]
    Parse(std::path::PathBuf, quick_junit::DeserializeError),
    #[error("serialising the merged report: {0}")]
    Serialize(#[from] quick_junit::SerializeError),
}

/// Merges JUnit reports (e.g. one per `--partition` shard) into one: test suites of the same
/// name become one suite holding every case, in the order the files are given; the counts are
/// the sums, and each suite's time (and the report's) is the sum of its cases' times.
pub fn merge(inputs: &[std::path::PathBuf]) -> Result<String, MergeError> {
    let mut name = None;
    let mut suites: Vec<TestSuite> = Vec::new();
    for path in inputs {
        let text = std::fs::read_to_string(path).map_err(|e| MergeError::Read(path.clone(), e))?;
        let report =
            Report::deserialize_from_str(&text).map_err(|e| MergeError::Parse(path.clone(), e))?;
        name.get_or_insert_with(|| report.name.clone());
        for suite in report.test_suites {
            let target = match suites.iter().position(|s| s.name == suite.name) {
                Some(i) => &mut suites[i],
                None => {
                    let mut fresh = TestSuite::new(suite.name.clone());
                    fresh.system_out = suite.system_out.clone();
                    fresh.system_err = suite.system_err.clone();
                    suites.push(fresh);
                    suites.last_mut().expect("just pushed")
                }
            };
            target.add_test_cases(suite.test_cases);
        }
    }
    let mut time = std::time::Duration::ZERO;
    for suite in &mut suites {
        let sum = suite.test_cases.iter().filter_map(|c| c.time).sum();
        suite.set_time(sum);
        time += sum;
    }
    let mut report = Report::new(name.unwrap_or_else(|| "airtwin".into()));
    report.set_time(time);
    report.add_test_suites(suites);
    Ok(report.to_string()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(cases: &[(&str, bool)]) -> String {
        let mut report = Report::new("airtwin");
        let mut suite = TestSuite::new("scenarios");
        for (name, ok) in cases {
            let status = if *ok {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(format!("{name} failed"));
                s
            };
            let mut case = TestCase::new(*name, status);
            case.set_time(std::time::Duration::from_millis(1500));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
        report.to_string().unwrap()
    }

    #[test]
    fn merge_sums_shards_into_one_suite() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.xml");
        let b = dir.path().join("b.xml");
        std::fs::write(&a, shard(&[("one", true), ("two", false)])).unwrap();
        std::fs::write(&b, shard(&[("three", true)])).unwrap();
        let merged = Report::deserialize_from_str(&merge(&[a, b]).unwrap()).unwrap();
        assert_eq!((merged.tests, merged.failures), (3, 1));
        assert_eq!(merged.test_suites.len(), 1);
        let suite = &merged.test_suites[0];
        let names: Vec<&str> = suite.test_cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["one", "two", "three"]);
        assert_eq!(suite.time, Some(std::time::Duration::from_millis(4500)));
        let failed = &suite.test_cases[1].status;
        assert!(
            matches!(failed, TestCaseStatus::NonSuccess { message: Some(m), .. } if m.as_str() == "two failed"),
            "{failed:?}"
        );
    }

    #[test]
    fn merge_names_the_file_that_is_not_junit() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.xml");
        std::fs::write(&bad, "not xml at all <").unwrap();
        let e = merge(&[bad]).unwrap_err().to_string();
        assert!(e.contains("bad.xml"), "{e}");
        let missing = dir.path().join("missing.xml");
        let e = merge(&[missing]).unwrap_err().to_string();
        assert!(e.contains("missing.xml"), "{e}");
    }
}
