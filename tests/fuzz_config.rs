//! The configuration parser against random and mutated TOML (proptest, bounded case counts;
//! `fuzz/fuzz_targets/config.rs` runs the same checks for long runs): it never panics, and every
//! error names the file and a line inside it (`FILE:LINE:COLUMN: …`, the format of
//! tests/config_errors.rs) and stays short.

pub mod fuzz_checks;
use floodgate::config::Config;
use fuzz_checks::*;
use proptest::prelude::*;
use std::io::Write;

/// Every `key` that appears on the left of `=` in the examples, plus near misses.
fn keys() -> Vec<String> {
    let mut k: Vec<String> = EXAMPLES
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .collect();
    k.extend(
        [
            "tcpdump",
            "bytes",
            "len",
            "user",
            "snaplen",
            "every",
            "rate",
            "burst",
            "per",
            "vlan",
            "src_mac",
            "dst_mac",
            "to",
            "workers",
            "state_file",
            "pf",
            "mtu",
            "Name",
            "dst port",
            "\"quoted\"",
            "a.b",
        ]
        .map(String::from),
    );
    k.sort();
    k.dedup();
    k
}

/// Values of every TOML type, including ones at and past the limits of the fields.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "63",
            "64",
            "4096",
            "4097",
            "65535",
            "65536",
            "4294967296",
            "1.5",
            "nan",
            "-inf",
            "true",
            "false",
            "[]",
            "[1, 2]",
            "[\"a\", 3]",
            "[[]]",
            "{}",
            "{ layer = \"l4\", offset = 99999, value = \"0x\", mask = \"0xZZ\" }",
            "{ layer = \"l9\" }",
            "1979-05-27T07:32:00Z",
            "\"\"",
            "\"sim\"",
            "\"0000:03:10.0\"",
            "\"0000:ff:1f.7\"",
            "\"10.0.0.0/33\"",
            "\"::/129\"",
            "\"1.2.3.4/-1\"",
            "[\"198.51.100.0/24\", \"2001:db8::/200\"]",
            "\"drop\"",
            "\"pass\"",
            "\"sample\"",
            "\"rate-limit\"",
            "\"udp4\"",
            "\"udp\"",
            "[\"udp\", \"icmp\", \"gre\"]",
            "\"1-0\"",
            "\"600-65535\"",
            "\"65535-70000\"",
            "\"0x80\"",
            "\"4,40 0 0 12,6 0 0 65535\"",
            "\"1,6 0 0 0\"",
            "\"0\"",
            "\"port 53 and\"",
            "\"udp port 53\"",
            "\"keep\"",
            "\"ff:ff:ff:ff:ff:ff\"",
            "\"02:00:00:00:00:0g\"",
            "\"nobody\"",
            "\"127.0.0.1:99999\"",
            "\"src\"",
            "\"src24\"",
            "\"flow\"",
            "\"tap\"",
            "\"vf\"",
        ])
        .prop_map(String::from),
        "[ -~]{0,20}".prop_map(|s| format!("{s:?}")),
        "\\PC{0,8}".prop_map(|s| format!("{s:?}")),
    ]
}

/// One edit of a config text.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the value of the n-th `key = value` line.
    Value(usize, String),
    /// Rename the key of the n-th `key = value` line.
    Key(usize, String),
    /// Delete line n.
    Delete(usize),
    /// Duplicate line n.
    Duplicate(usize),
    /// Swap lines n and m.
    Swap(usize, usize),
    /// Overwrite one byte (the text is then read as UTF-8, lossily).
    Byte(usize, u8),
    /// Insert text at a byte offset.
    Insert(usize, String),
    /// Cut the text at a byte offset.
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let keys = keys();
    prop_oneof![
        4 => (any::<usize>(), value()).prop_map(|(n, v)| Edit::Value(n, v)),
        2 => (any::<usize>(), prop::sample::select(keys)).prop_map(|(n, k)| Edit::Key(n, k)),
        1 => any::<usize>().prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Byte(a, b)),
        1 => (any::<usize>(), prop::sample::select(vec![
            "[", "]", "[[", "\"", "'", "=", "\n", "#", "\\", "\"\"\"", "\n[device]\n", "\n[[filter.rule]]\n",
            "\n[extra]\n", "{", "}", ",", "\u{0}", "é", "\u{feff}", "\r\n", "\t", "x = 1\n",
        ])).prop_map(|(a, s)| Edit::Insert(a, s.to_string())),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, e: &Edit) -> String {
    let mut lines: Vec<String> = text.split('\n').map(String::from).collect();
    let kv: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|(i, _)| i)
        .collect();
    let n = lines.len();
    match e {
        Edit::Value(i, v) | Edit::Key(i, v) if !kv.is_empty() => {
            let at = kv[i % kv.len()];
            let (k, rest) = lines[at].split_once('=').unwrap();
            lines[at] = match e {
                Edit::Value(..) => format!("{k}= {v}"),
                _ => format!("{v} ={rest}"),
            };
        }
        Edit::Value(..) | Edit::Key(..) => {}
        Edit::Delete(i) => {
            lines.remove(i % n);
        }
        Edit::Duplicate(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Edit::Swap(a, b) => lines.swap(a % n, b % n),
        Edit::Byte(at, b) => {
            let mut bytes = lines.join("\n").into_bytes();
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = *b;
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Edit::Insert(at, s) => {
            let mut t = lines.join("\n");
            let mut at = at % (t.len() + 1);
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            t.insert_str(at, s);
            return t;
        }
        Edit::Truncate(at) => {
            let t = lines.join("\n");
            let mut at = at % (t.len() + 1);
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            return t[..at].to_string();
        }
    }
    lines.join("\n")
}

/// A file of its own under the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(bytes: &[u8]) -> TempFile {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "floodgate-fuzz-config-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_examples_parse() {
    for t in EXAMPLES {
        assert!(check(t).is_none());
    }
}

#[test]
fn load_names_the_file_for_unreadable_and_non_utf8_files() {
    let f = TempFile::new(b"[device]\npci = \"\xff\xfe\"\n");
    let p = &f.0;
    let e = Config::load(p).unwrap_err();
    assert!(e.to_string().starts_with(&p.display().to_string()), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary printable text and arbitrary Unicode.
    #[test]
    fn random_text_never_panics(t in prop_oneof!["[ -~\n\t]{0,200}", "\\PC{0,100}", "(\\[?[a-z_.]{1,8}\\]?( = [0-9\"a-z\\[\\]{}, ]{0,12})?\n){0,12}"]) {
        check_short(&t);
    }

    /// The examples with a few edits: values of every type (and at every limit), renamed,
    /// deleted, duplicated and swapped lines, stray bytes and punctuation, truncation.
    #[test]
    fn mutated_examples_never_panic(which in 0usize..2, edits in prop::collection::vec(edit(), 1..5)) {
        let mut t = EXAMPLES[which].to_string();
        for e in &edits {
            t = apply(&t, e);
        }
        check_short(&t);
    }

    /// The same through `Config::load`, with raw bytes (not necessarily UTF-8): errors name the
    /// file.
    #[test]
    fn load_of_mutated_bytes_names_the_file(
        which in 0usize..2,
        bytes in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut b = EXAMPLES[which].as_bytes().to_vec();
        for (at, v) in &bytes {
            let n = b.len();
            b[at % n] = *v;
        }
        let f = TempFile::new(&b);
        let p = &f.0;
        if let Err(e) = Config::load(p) {
            let msg = e.to_string();
            prop_assert!(msg.starts_with(&format!("{}:", p.display())), "{}", msg);
        }
    }
}

/// A value quoted back in an error is cut to a few dozen characters, so even a config with a
/// 100 kB value gives a short message. Needs the quoted-value truncation of config errors.
#[test]
fn errors_quoting_a_huge_value_stay_short() {
    let huge = "x".repeat(100_000);
    let base = EXAMPLES[1];
    let mut cases = Vec::new();
    // The huge value in every `key = value` line in turn, as a string, as an array of strings
    // and as a key.
    let lines: Vec<&str> = base.split('\n').collect();
    for (i, l) in lines.iter().enumerate() {
        if l.trim_start().starts_with('#') || !l.contains('=') {
            continue;
        }
        let (k, _) = l.split_once('=').unwrap();
        for v in [
            format!("{k}= \"{huge}\""),
            format!("{k}= [\"{huge}\"]"),
            format!("{huge} = 1"),
        ] {
            let mut m = lines.clone();
            m[i] = &v;
            cases.push(m.join("\n"));
        }
    }
    for t in cases {
        if let Some(msg) = check(&t) {
            assert!(
                msg.len() <= MAX_MESSAGE,
                "{} byte message: {}…",
                msg.len(),
                &msg[..200]
            );
        }
    }
}
/// Found by `mutated_examples_never_panic`: a NUL byte inside a comment gave
/// `FILE:LINE:COLUMN: ` and no message (the TOML parser has no text for that error).
#[test]
fn regression_nul_in_a_comment_has_a_message() {
    let t = EXAMPLES[0].replacen("# With to", "#\u{0}With to", 1);
    let line = 1 + EXAMPLES[0][..EXAMPLES[0].find("# With to").unwrap()]
        .lines()
        .count();
    let msg = check(&t).expect("rejected");
    assert_eq!(
        msg,
        format!("fuzz.toml:{line}:2: TOML syntax error: unexpected character '\\0'")
    );
    let msg = check("[device]\npci = \"sim\" #\u{0}\n").expect("rejected");
    assert!(msg.starts_with("fuzz.toml:2:"), "{msg}");
}
