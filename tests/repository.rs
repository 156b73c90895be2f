//! Checks on the repository's own text: every tracked file stays within the repository (no path
//! to research material outside it), and every `docs/` page a file cites exists and holds the
//! section the citation names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Tracked files (`git ls-files`), relative to the root, with their contents.
fn tracked_files() -> Vec<(String, Vec<u8>)> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "README.md"),
        "git ls-files listed no README.md: {names:?}"
    );
    names
        .into_iter()
        // A tracked file deleted in the work tree is not there to read.
        .filter_map(|n| std::fs::read(root().join(&n)).ok().map(|b| (n, b)))
        .collect()
}

/// Strings no tracked file may contain: paths to material outside the repository. Built from
/// pieces so that this file does not contain them either.
fn forbidden() -> Vec<String> {
    vec![
        format!("{}/{}", "..", "shared"),
        format!("/work/{}", "shared"),
        format!("{}-{}.md", "protocol", "notes"),
    ]
}

/// Where `needle` occurs in `hay`, as 1-based line numbers.
fn lines_with(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, line) in hay.split(|b| *b == b'\n').enumerate() {
        if line.windows(needle.len()).any(|w| w == needle) {
            found.push(i + 1);
        }
    }
    found
}

fn outside_references(files: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, bytes) in files {
        for needle in forbidden() {
            for line in lines_with(bytes, needle.as_bytes()) {
                bad.push(format!("{name}:{line}: {needle}"));
            }
        }
    }
    bad
}

/// A citation of a repository page: `docs/<path>.md`, optionally followed by `, "Section"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Citation {
    page: String,
    section: Option<String>,
    file: String,
    line: usize,
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

/// The citations of `docs/….md` pages in `text`. A `docs/` that continues a longer path or a URL
/// (`pyatv/docs/x.md`, `https://host/docs/x.md`) is another project's and is skipped.
fn citations(file: &str, text: &str) -> Vec<Citation> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find("docs/") {
            let start = from + at;
            from = start + "docs/".len();
            if line[..start].chars().next_back().is_some_and(is_path_char) {
                continue;
            }
            let len = line[start..]
                .find(|c: char| !is_path_char(c))
                .unwrap_or(line.len() - start);
            // A sentence may end right after the path: `see docs/peers.md.`
            let page = line[start..start + len].trim_end_matches('.').to_string();
            if !page.ends_with(".md") {
                continue;
            }
            let rest = &line[start + page.len()..];
            let section = rest
                .strip_prefix(", \"")
                .or_else(|| rest.strip_prefix(", “"))
                .and_then(|r| r.find(['"', '”']).map(|end| r[..end].to_string()));
            out.push(Citation {
                page,
                section,
                file: file.to_string(),
                line: i + 1,
            });
        }
    }
    out
}

/// Headings of a Markdown page, without their `#`s.
fn headings(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .collect()
}

/// What is wrong with `cites`: pages that do not exist, sections no heading of the page names.
fn broken_citations(cites: &[Citation], files: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut bad = BTreeSet::new();
    for c in cites {
        let Some((_, page)) = files.iter().find(|(n, _)| *n == c.page) else {
            bad.insert(format!(
                "{}:{}: cites {}, which is not a tracked file",
                c.file, c.line, c.page
            ));
            continue;
        };
        if let Some(section) = &c.section {
            let text = String::from_utf8_lossy(page);
            if !headings(&text).iter().any(|h| h.contains(section.as_str())) {
                bad.insert(format!(
                    "{}:{}: cites {}, \"{section}\", but no heading of that page names it",
                    c.file, c.line, c.page
                ));
            }
        }
    }
    bad.into_iter().collect()
}

fn all_citations(files: &[(String, Vec<u8>)]) -> Vec<Citation> {
    files
        .iter()
        .filter_map(|(n, b)| std::str::from_utf8(b).ok().map(|t| citations(n, t)))
        .flatten()
        .collect()
}

#[test]
fn no_tracked_file_refers_to_material_outside_the_repository() {
    let bad = outside_references(&tracked_files());
    assert!(bad.is_empty(), "outside references:\n{}", bad.join("\n"));
}

#[test]
fn every_cited_docs_page_exists_with_the_cited_section() {
    let files = tracked_files();
    let cites = all_citations(&files);
    // The protocol pages are cited from the code; finding none means the scan is broken.
    for page in [
        "docs/protocols/raop.md",
        "docs/protocols/airplay.md",
        "docs/protocols/dacp.md",
        "docs/protocols/dns-sd.md",
        "docs/peers.md",
        "docs/performance.md",
    ] {
        assert!(
            cites
                .iter()
                .any(|c| c.page == page && !c.file.starts_with("docs/")),
            "no file outside docs/ cites {page}"
        );
    }
    assert!(cites.iter().any(|c| c.section.is_some()));
    let bad = broken_citations(&cites, &files);
    assert!(bad.is_empty(), "broken citations:\n{}", bad.join("\n"));
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // `@` stands for the docs folder, so that this file cites no page that does not exist.
    let at = |text: &str| text.replace('@', "docs/");
    let page = (at("@protocols/x.md"), b"# X\n\n## Pairing\n".to_vec());
    let code = |text: &str| ("src/a.rs".to_string(), at(text).into_bytes());
    // An outside path is found, on its line.
    let leak = code(&format!("ok\n// see {}/notes\n", forbidden()[0]));
    let found = outside_references(&[leak]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("src/a.rs:2: "), "{found:?}");
    assert!(outside_references(&[code("// @protocols/x.md\n")]).is_empty());
    // A missing page and a missing section are found; a present one passes.
    let cites = citations(
        "src/a.rs",
        &at("// (@protocols/x.md, \"Pairing\"), @protocols/x.md.\n// @protocols/y.md; @protocols/x.md, \"Login\"\n"),
    );
    assert_eq!(cites.len(), 4, "{cites:?}");
    assert_eq!(cites[0].section.as_deref(), Some("Pairing"));
    assert_eq!(cites[1].page, at("@protocols/x.md"));
    assert_eq!(cites[1].section, None);
    let bad = broken_citations(&cites, &[page]);
    assert_eq!(bad.len(), 2, "{bad:?}");
    let missing = at("src/a.rs:2: cites @protocols/y.md, which is not");
    assert!(bad.iter().any(|b| b.starts_with(&missing)), "{bad:?}");
    assert!(
        bad.iter().any(|b| b.contains("\"Login\", but no heading")),
        "{bad:?}"
    );
    // Another project's docs folder is not a citation of this repository's.
    assert!(citations("a.md", &at("pyatv/@x.md https://h/@y.md")).is_empty());
}
