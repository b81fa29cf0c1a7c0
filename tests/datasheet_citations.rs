//! The code cites the hardware as `facts §N` or `facts §N.M`: every such section number must be
//! a heading of `docs/datasheet.md`, so that a reader of the repository can follow each citation.
//! The docs (`*.md`, the datasheet included) use the same numbers and are held to the same rule.
//! A second check keeps work-package labels out of the code and the docs: comments say what the
//! code does, not which work item wrote it.
//!
//! Both walk the workspace from `CARGO_MANIFEST_DIR` (skipping build output, hidden directories
//! and the QEMU download cache) and report every offending `file:line`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Section marker used by the citations.
const SECTION: char = '\u{a7}';

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends in one of `exts`, in a stable order.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading directory {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            let rel = path.strip_prefix(root()).unwrap_or(&path);
            let skip = name.starts_with('.')
                || name == "target"
                || rel == Path::new("scripts/qemu/cache")
                || rel == Path::new("scripts/qemu/work");
            if !skip {
                files(&path, exts, out);
            }
        } else if exts.iter().any(|ext| name.ends_with(ext)) {
            out.push(path);
        }
    }
}

/// Section numbers cited on one line: each `§` followed by `N` or `N.M` (a trailing full stop
/// ends the number, as in "see §6.1."). Ranges like "§4.1–§4.6" cite both ends.
fn citations(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(SECTION) {
        rest = &rest[at + SECTION.len_utf8()..];
        let mut number = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() {
                number.push(c);
                chars.next();
            } else if c == '.' && number.chars().last().is_some_and(|l| l.is_ascii_digit()) {
                // Only part of the number when a digit follows.
                let mut ahead = chars.clone();
                ahead.next();
                if ahead.peek().is_some_and(|d| d.is_ascii_digit()) {
                    number.push(c);
                    chars.next();
                } else {
                    break;
                }
            } else {
                break;
            }
        }
        if !number.is_empty() {
            out.push(number);
        }
    }
    out
}

/// Section numbers of the datasheet's headings (`## §4 ...`, `### §4.3 ...`).
fn datasheet_sections(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let title = l.trim_start_matches('#').trim_start();
            let number = title.strip_prefix(SECTION)?;
            let number: String = number
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.');
            (!number.is_empty()).then(|| number.to_string())
        })
        .collect()
}

/// The work-package labels: the model's two team tags ("SIM-" followed by NET or CORE), and
/// "issue N item" / "issue N" followed by a section sign (case-insensitive). The patterns are
/// assembled at run time so that this file does not match itself.
fn label(line: &str) -> Option<String> {
    let lower = line.to_lowercase();
    for team in ["net", "core"] {
        let tag = format!("sim-{team}");
        if lower.contains(&tag) {
            return Some(tag.to_uppercase());
        }
    }
    let word = "issue ";
    let mut from = 0;
    while let Some(at) = lower[from..].find(word) {
        let start = from + at;
        let after = &lower[start + word.len()..];
        let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            let tail = &after[digits..];
            let item = format!(" {}", "item");
            if tail.starts_with(&item) || tail.starts_with(&format!(" {SECTION}")) {
                return Some(line[start..].chars().take(20).collect());
            }
        }
        from = start + word.len();
    }
    None
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_facts_citation_resolves_to_a_datasheet_section() {
    let sheet_path = root().join("docs/datasheet.md");
    let sheet = fs::read_to_string(&sheet_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", sheet_path.display()));
    let sections = datasheet_sections(&sheet);
    assert!(
        sections.contains("2.1") && sections.contains("8"),
        "docs/datasheet.md: no `## §N` / `### §N.M` headings found (have {sections:?})"
    );

    let mut sources = Vec::new();
    files(&root(), &[".rs", ".md"], &mut sources);
    assert!(
        sources
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .count()
            > 50,
        "only {} files found under {}",
        sources.len(),
        root().display()
    );

    let mut broken = Vec::new();
    let mut count = 0;
    for path in &sources {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (i, line) in text.lines().enumerate() {
            for number in citations(line) {
                count += 1;
                if !sections.contains(&number) {
                    broken.push(format!(
                        "{}:{}: {SECTION}{number} is not a section of docs/datasheet.md: {}",
                        relative(path),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    // The code cites the sheet a few hundred times; far fewer means the walk missed the tree.
    assert!(
        count > 200,
        "only {count} citations found: is the walk skipping the sources?"
    );
    assert!(
        broken.is_empty(),
        "{} citation(s) do not resolve:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn no_work_package_labels_in_code_or_docs() {
    let mut paths = Vec::new();
    files(&root(), &[".rs", ".md", ".sh", ".toml"], &mut paths);
    let mut found = Vec::new();
    for path in &paths {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (i, line) in text.lines().enumerate() {
            if let Some(what) = label(line) {
                found.push(format!(
                    "{}:{}: {what:?}: {}",
                    relative(path),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "work-package labels (describe the behaviour instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_parsers_find_what_they_should() {
    let s = SECTION;
    assert_eq!(
        citations(&format!("(facts {s}2.2, {s}2.3; {s}3.8 step 11)")),
        ["2.2", "2.3", "3.8"]
    );
    assert_eq!(citations(&format!("see {s}6.1.")), ["6.1"]);
    assert_eq!(
        citations(&format!("{s}4.1–{s}4.6 and {s}9")),
        ["4.1", "4.6", "9"]
    );
    assert!(citations(&format!("facts {s}N, no number")).is_empty());

    let sheet = format!("# Title\n## {s}3 Mailbox\n### {s}3.8 Reset\ntext {s}7\n## Other\n");
    let sections = datasheet_sections(&sheet);
    assert_eq!(sections.into_iter().collect::<Vec<_>>(), ["3", "3.8"]);

    let sim = ["SIM", "NET"].join("-");
    assert!(label(&format!("// {sim}'s switch")).is_some());
    assert!(label(&format!("//! pool ({} 2 {} 4)", "Issue", "item")).is_some());
    assert!(label(&format!("//! faults ({} 2 {s}7)", "issue")).is_some());
    assert!(label("// the next issue is the ring size").is_none());
    assert!(label("// 2 issues 4 items").is_none());
}
