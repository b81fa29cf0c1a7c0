//! Shell completions and man pages, generated from the CLI definition: every subcommand (as
//! `floodgate --help` lists them) is completed and has a page, and each page holds the options
//! its `--help` shows.

use std::collections::BTreeSet;
use std::process::Command;

fn floodgate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "floodgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Subcommand names from the "Commands:" section of a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// Every subcommand path, e.g. ["demo"], ["rules", "test"].
fn all_paths() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        for sub in subcommands(&floodgate(&args)) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p.clone());
            out.push(p);
        }
    }
    out
}

/// Long options (`--name`) a help text lists.
fn long_options(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("-h, ").unwrap_or(l);
            let l = l.strip_prefix("-V, ").unwrap_or(l);
            l.starts_with("--").then(|| {
                l.split(|c: char| c.is_whitespace() || c == '<' || c == '=')
                    .next()
                    .unwrap()
                    .to_string()
            })
        })
        .collect()
}

#[test]
fn the_subcommands_are_found() {
    let paths = all_paths();
    for want in [
        &["demo"][..],
        &["run"],
        &["check-config"],
        &["rules"],
        &["rules", "test"],
        &["completions"],
        &["man"],
        &["top"],
    ] {
        assert!(paths.iter().any(|p| p == want), "{want:?} not in {paths:?}");
    }
    let demo = long_options(&floodgate(&["demo", "--help"]));
    for opt in ["--seconds", "--workers", "--help", "--version"] {
        assert!(demo.contains(opt), "{opt} not in {demo:?}");
    }
}

#[test]
fn bash_completion_names_every_subcommand_and_option() {
    let bash = floodgate(&["completions", "bash"]);
    assert!(bash.contains("complete -F _floodgate"), "not a bash script");
    for path in all_paths() {
        let parent = std::iter::once("floodgate")
            .chain(path[..path.len() - 1].iter().map(String::as_str))
            .map(|s| s.replace('-', "__subcmd__"))
            .collect::<Vec<_>>()
            .join("__subcmd__");
        let arm = format!("{parent},{})", path.last().unwrap());
        assert!(bash.contains(&arm), "bash completion lacks {arm}");
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        for opt in long_options(&floodgate(&args)) {
            assert!(bash.contains(&opt), "bash completion lacks {path:?} {opt}");
        }
    }
    for shell in ["zsh", "fish"] {
        let script = floodgate(&["completions", shell]);
        for path in all_paths() {
            assert!(
                script.contains(path.last().unwrap().as_str()),
                "{shell} completion lacks {path:?}"
            );
        }
    }
}

#[test]
fn a_man_page_per_subcommand_with_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    floodgate(&["man", "--out", out.to_str().unwrap()]);
    let mut expected: BTreeSet<String> = all_paths()
        .iter()
        .map(|p| format!("floodgate-{}.1", p.join("-")))
        .collect();
    expected.insert("floodgate.1".into());
    let found: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(found, expected);
    for path in all_paths() {
        let page =
            std::fs::read_to_string(out.join(format!("floodgate-{}.1", path.join("-")))).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "not roff");
        assert!(
            page.contains(&format!(".TH floodgate-{} 1", path.join("-"))),
            "{path:?}: {page}"
        );
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        for opt in long_options(&floodgate(&args)) {
            let roff = opt.replace('-', "\\-");
            assert!(page.contains(&roff), "page of {path:?} lacks {opt}");
        }
    }
    let top = std::fs::read_to_string(out.join("floodgate.1")).unwrap();
    for path in all_paths().iter().filter(|p| p.len() == 1) {
        assert!(
            top.contains(&format!("floodgate\\-{}(1)", path[0].replace('-', "\\-"))),
            "floodgate.1 does not list {path:?}"
        );
    }
}
