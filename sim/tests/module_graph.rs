//! The model's modules import each other without a circle, and the crate root only declares
//! modules and re-exports.
//!
//! The test reads `sim/src`, takes every `crate::` path outside comments and string literals
//! (`use` lines and paths in code alike), resolves it to the module it names (a name the crate
//! root re-exports counts as its defining module), and searches the resulting graph for a cycle.
//! A submodule directory (`vfio_user/`) counts as one module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Removes comments and the contents of string and char literals, keeping the code.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x' or '\n'); lifetimes ('a) have no closing quote here.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            let c = src[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every path that follows `crate::` at the start of `rest`
/// (`a::b` → `a`; `{a::b, C, d}` → `a`, `C`, `d`).
fn heads(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest).to_string()];
    };
    let (mut depth, mut cur, mut out) = (0, String::new(), Vec::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.iter()
        .map(|p| ident(p.trim()).to_string())
        .filter(|h| !h.is_empty())
        .collect()
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    /// Items (other than `mod`, `use` and attributes) the crate root defines.
    root_items: Vec<String>,
}

fn graph(src: &Path) -> Graph {
    let lib = strip(&std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs"));
    let mut mods = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    let mut root_items = Vec::new();
    for stmt in lib.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let mut stmt = stmt.trim_start_matches(|c: char| c == '\n' || c.is_whitespace());
        // Attributes (`#![deny(...)]`, `#[cfg(...)]`) end with no `;`: they start the next
        // statement's text. Drop them, one line each, so the item after them is seen.
        while stmt.starts_with('#') {
            stmt = stmt.split_once('\n').map_or("", |(_, r)| r).trim_start();
        }
        if stmt.is_empty() {
            continue;
        }
        let bare = stmt
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ");
        if let Some(m) = bare.strip_prefix("mod ") {
            mods.insert(ident(m.trim()).to_string());
        } else if let Some(u) = bare.strip_prefix("use ") {
            let u = u.trim().trim_start_matches("crate::");
            let module = ident(u).to_string();
            let rest = &u[module.len()..].trim_start_matches("::");
            for name in heads(rest) {
                reexports.insert(name, module.clone());
            }
            // `pub use m::{A, b::C}` re-exports A and C: record the last segments too.
            for part in rest.trim_matches(|c| c == '{' || c == '}').split(',') {
                let last = part.rsplit("::").next().unwrap_or("").trim();
                let last = last.rsplit(" as ").next().unwrap_or(last).trim();
                if !last.is_empty() {
                    reexports.insert(ident(last).to_string(), module.clone());
                }
            }
        } else if !stmt.starts_with("#!") && !stmt.starts_with("#[") {
            root_items.push(stmt.lines().next().unwrap_or("").to_string());
        }
    }
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read sim/src") {
        let p = entry.expect("dir entry").path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if name == "bin" {
                continue;
            }
            for f in std::fs::read_dir(&p).expect("read submodule dir") {
                let f = f.expect("dir entry").path();
                if f.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&f).expect("read module");
                    files.entry(name.clone()).or_default().push_str(&text);
                }
            }
        } else if p.extension().is_some_and(|e| e == "rs") && name != "lib" {
            files.insert(name, std::fs::read_to_string(&p).expect("read module"));
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &files {
        let code = strip(text);
        let e = edges.entry(m.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            if at > 0 && code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `floodgate_crate::` or similar, not our crate
            }
            for h in heads(&code[at + "crate::".len()..]) {
                let target = if mods.contains(&h) {
                    h
                } else if let Some(m) = reexports.get(&h) {
                    m.clone()
                } else {
                    "<crate root>".to_string()
                };
                if &target != m {
                    e.insert(target);
                }
            }
        }
    }
    Graph { edges, root_items }
}

/// One cycle, if the graph has any.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn dfs(
        u: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(u.to_string(), 1);
        stack.push(u.to_string());
        for v in edges.get(u).into_iter().flatten() {
            match state.get(v) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == v).expect("on the stack");
                    let mut c = stack[at..].to_vec();
                    c.push(v.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = dfs(v, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(u.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in edges.keys() {
        if !state.contains_key(u) {
            if let Some(c) = dfs(u, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn src_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_cycle_among_the_models_modules() {
    let g = graph(&src_dir());
    let listing: Vec<String> = g
        .edges
        .iter()
        .map(|(m, to)| {
            format!(
                "{m} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    // The graph is real: the datapath reaches the switch and the RX engine, the BAR reaches the
    // PF agent.
    assert!(g.edges["datapath"].contains("switch"), "{listing:#?}");
    assert!(g.edges["datapath"].contains("rx"), "{listing:#?}");
    assert!(g.edges["vf"].contains("pf"), "{listing:#?}");
    if let Some(c) = find_cycle(&g.edges) {
        panic!("import cycle: {}\n{listing:#?}", c.join(" -> "));
    }
}

#[test]
fn crate_root_only_declares_and_reexports() {
    let g = graph(&src_dir());
    assert!(
        g.root_items.is_empty(),
        "sim/src/lib.rs defines items: {:?}",
        g.root_items
    );
    let into_root: Vec<&String> = g
        .edges
        .iter()
        .filter(|(_, to)| to.contains("<crate root>"))
        .map(|(m, _)| m)
        .collect();
    assert!(
        into_root.is_empty(),
        "modules use crate-root items that are not re-exports: {into_root:?}"
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.entry("a".into()).or_default().insert("b".into());
    e.entry("b".into()).or_default().insert("c".into());
    e.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&e).map(|c| c.len()), Some(4));
    e.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&e), None);
    assert_eq!(heads(" {a::b, C, d::{e, f}}"), ["a", "C", "d"]);
    assert_eq!(
        strip("use crate::x; // crate::y\nlet s = \"crate::z\";"),
        "use crate::x; \nlet s = \"\";"
    );
}
