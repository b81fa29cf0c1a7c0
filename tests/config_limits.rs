//! The configuration's limits (docs/config.md, "Limits"): each is refused with an error that
//! names the file and line and gives the figure, and refusing is cheap (a huge config is not
//! parsed, and nothing is quadratic in the number of rules).

use floodgate::config::{limits, Config, ConfigError};
use proptest::prelude::*;
use std::fmt::Write as _;

const DEV: &str = "[device]\npci = \"sim\"\n";

fn err(text: &str) -> String {
    match Config::from_str_named(text, "t.toml") {
        Ok(_) => panic!(
            "config unexpectedly accepted:\n{}",
            &text[..text.len().min(400)]
        ),
        Err(e) => e.to_string(),
    }
}

fn check(text: &str, line: usize, needles: &[&str]) {
    let msg = err(text);
    let prefix = format!("t.toml:{line}:");
    assert!(msg.starts_with(&prefix), "expected {prefix}… got: {msg}");
    for n in needles {
        assert!(msg.contains(n), "expected {n:?} in: {msg}");
    }
    assert!(msg.len() < 1000, "error of {} bytes: {msg}", msg.len());
}

/// `n` rules named r0, r1, …, each 4 lines long, after the 2-line [device].
fn rules(n: usize) -> String {
    let mut s = String::from(DEV);
    for i in 0..n {
        write!(
            s,
            "[[filter.rule]]\nname = \"r{i}\"\naction = \"drop\"\ndst_port = 53\n"
        )
        .unwrap();
    }
    s
}

fn line_of_rule(i: usize) -> usize {
    3 + 4 * i
}

#[test]
fn a_huge_file_is_refused_before_parsing() {
    let dir = std::env::temp_dir().join(format!("floodgate-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("huge.toml");
    // 50 MB: one rule with a 50 MB name (what an operator's generator bug produced).
    let mut f = std::fs::File::create(&path).unwrap();
    use std::io::Write as _;
    f.write_all(DEV.as_bytes()).unwrap();
    f.write_all(b"[[filter.rule]]\naction = \"drop\"\nname = \"")
        .unwrap();
    f.write_all(&vec![b'x'; 50 << 20]).unwrap();
    f.write_all(b"\"\n").unwrap();
    drop(f);
    let e = Config::load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::TooLarge { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("{} bytes", limits::MAX_CONFIG_BYTES)),
        "{msg}"
    );
    assert!(msg.len() < 300, "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
    // The same from text.
    let text = format!("{DEV}# {}\n", "y".repeat(limits::MAX_CONFIG_BYTES as usize));
    assert!(matches!(
        Config::from_str_named(&text, "t.toml"),
        Err(ConfigError::TooLarge { .. })
    ));
}

#[test]
fn rule_count_is_capped_and_names_the_first_rule_over() {
    let cfg = Config::from_str_named(&rules(limits::MAX_RULES), "t.toml").unwrap();
    assert_eq!(cfg.filter.rules.len(), limits::MAX_RULES);
    check(
        &rules(limits::MAX_RULES + 1),
        line_of_rule(limits::MAX_RULES),
        &["more than 10000 filter rules", "over the limit"],
    );
    // A file just under the size limit packed with the shortest rules is refused by count.
    let mut s = String::from(DEV);
    while s.len() < limits::MAX_CONFIG_BYTES as usize - 64 {
        s.push_str("[[filter.rule]]\naction=\"drop\"\n");
    }
    let msg = err(&s);
    assert!(msg.contains("more than 10000 filter rules"), "{msg}");
    // Rules as an inline array are counted after parsing.
    let mut s = format!("{DEV}[filter]\nrule = [\n");
    for i in 0..=limits::MAX_RULES {
        writeln!(s, "{{ name = \"r{i}\", action = \"drop\" }},").unwrap();
    }
    s.push_str("]\n");
    check(
        &s,
        5 + limits::MAX_RULES,
        &["10001 filter rules", "limit of 10000"],
    );
    let mut st = String::from(DEV);
    for _ in 0..=limits::MAX_RULES {
        st.push_str("[[steering]]\nflow = \"udp4\"\ndst_port = 53\n");
    }
    check(
        &st,
        3 + 3 * limits::MAX_RULES,
        &["steering rules", "limit of 10000"],
    );
}

#[test]
fn duplicate_names_are_found_among_many_rules() {
    let mut s = rules(limits::MAX_RULES - 1);
    s.push_str("[[filter.rule]]\nname = \"r3\"\naction = \"pass\"\n");
    check(
        &s,
        line_of_rule(limits::MAX_RULES - 1) + 1,
        &["already used by filter rule 3"],
    );
}

#[test]
fn quoted_values_are_cut() {
    let long = "z".repeat(100_000);
    for text in [
        format!("{DEV}[[filter.rule]]\nname = \"r\"\naction = \"{long}\"\n"),
        format!("{DEV}[[filter.rule]]\nname = \"r\"\naction = \"drop\"\nproto = \"{long}\"\n"),
        format!("[device]\npci = \"{long}\"\n"),
        format!("[device]\npci = \"sim\"\nqueues = \"{long}\"\n"),
    ] {
        let msg = err(&text);
        assert!(
            msg.len() < 400,
            "error of {} bytes: {}",
            msg.len(),
            &msg[..400]
        );
        assert!(msg.contains("…(100000 bytes)"), "{msg}");
    }
    let e = floodgate::libpcap::PcapError::Compile {
        expr: long.clone(),
        message: "syntax error".into(),
    };
    assert!(e.to_string().len() < 200, "{e}");
}

#[test]
fn empty_expressions_are_errors_not_match_all() {
    for (body, key) in [
        ("tcpdump = \"\"", "tcpdump is empty"),
        ("tcpdump = \"  \\t \"", "tcpdump is empty"),
        ("bpf = \"\"", "bpf is empty"),
        ("bpf = \" \"", "bpf is empty"),
    ] {
        check(
            &format!("{DEV}[[filter.rule]]\nname = \"r\"\naction = \"drop\"\n{body}\n"),
            6,
            &[key],
        );
    }
}

fn hosts(n: usize) -> String {
    (0..n)
        .map(|i| format!("host 10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[test]
fn tcpdump_size_and_terms_are_capped_before_libpcap_runs() {
    // 3000 terms: minutes in libpcap's optimizer; refused at once, libpcap or not.
    let e = hosts(3000);
    check(
        &format!("{DEV}[[filter.rule]]\nname = \"r\"\naction = \"drop\"\ntcpdump = \"{e}\"\n"),
        6,
        &["3000 terms", "limit of 1000", "split it"],
    );
    let long = format!("udp and {}", "(udp) ".repeat(20_000));
    check(
        &format!("{DEV}[[filter.rule]]\nname = \"r\"\naction = \"drop\"\ntcpdump = \"{long}\"\n"),
        6,
        &[&format!("{} bytes", long.len()), "limit of 65536 bytes"],
    );
    assert_eq!(
        floodgate::config::tcpdump_terms("udp and (src host a or dst host b)"),
        3
    );
    assert_eq!(floodgate::config::tcpdump_terms("tcp||udp&&icmp"), 1);
    assert_eq!(floodgate::config::tcpdump_terms("tcp || (udp && icmp)"), 3);
}

#[test]
fn rate_limit_memory_is_capped_per_worker_and_in_total() {
    let rl = |name: &str, size: usize| {
        format!("[[filter.rule]]\nname = \"{name}\"\naction = \"rate-limit\"\nrate = 10\ntable_size = {size}\n")
    };
    let max = limits::MAX_TABLE_SIZE;
    // Three 96 MiB tables: 288 MiB for one worker.
    let text = format!("{DEV}{}{}{}", rl("a", max), rl("b", max), rl("c", max));
    check(
        &text,
        3 + 5 * 2 + 4,
        &["filter rule 2", "288 MiB", "limit of 256 MiB"],
    );
    // Two are fine for one worker, not for eight.
    let two = format!("{DEV}{}{}", rl("a", max), rl("b", max));
    Config::from_str_named(&two, "t.toml").unwrap();
    check(
        &format!("{two}[daemon]\nworkers = 8\n"),
        14,
        &[
            "[daemon]",
            "192 MiB per worker times 8 workers is 1536 MiB",
            "limit of 1024 MiB",
        ],
    );
    Config::from_str_named(&format!("{two}[daemon]\nworkers = 5\n"), "t.toml").unwrap();
}

#[test]
fn check_accounts_names_the_line() {
    let base = format!("{DEV}[daemon]\n");
    let cfg = Config::from_str_named(&format!("{base}user = \"root\"\n"), "t.toml").unwrap();
    cfg.check_accounts().unwrap();
    let cfg =
        Config::from_str_named(&format!("{base}user = \"no-such-user-fg\"\n"), "t.toml").unwrap();
    let msg = cfg.check_accounts().unwrap_err().to_string();
    assert!(msg.starts_with("t.toml:4:"), "{msg}");
    assert!(
        msg.contains("no-such-user-fg") && msg.contains("does not exist"),
        "{msg}"
    );
    let cfg = Config::from_str_named(
        &format!("{base}user = \"root\"\ngroup = \"no-such-group-fg\"\n"),
        "t.toml",
    )
    .unwrap();
    let msg = cfg.check_accounts().unwrap_err().to_string();
    assert!(msg.starts_with("t.toml:5:"), "{msg}");
    // No user: nothing to check.
    Config::from_str_named(DEV, "t.toml")
        .unwrap()
        .check_accounts()
        .unwrap();
}

fn toml_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(o, "\\u{:04X}", c as u32).unwrap(),
            c => o.push(c),
        }
    }
    o
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever a bad value holds (quotes, backslashes, any characters, any length), the error
    /// points at its line and stays short.
    #[test]
    fn errors_stay_short_and_point_at_the_line(v in ".{0,3000}", key in 0usize..4) {
        let e = toml_escape(&v);
        let (text, line) = match key {
            0 => (format!("{DEV}[[filter.rule]]\nname = \"r\"\naction = \"x{e}\"\n"), 5),
            1 => (format!("{DEV}[[filter.rule]]\nname = \"r\"\naction = \"drop\"\nsrc = \"x{e}\"\n"), 6),
            2 => (format!("{DEV}[tap]\nname = \"{e}-with-a-long-suffix-to-be-invalid\"\n"), 4),
            _ => (format!("{DEV}queues = \"{e}\"\n"), 3),
        };
        let msg = err(&text);
        prop_assert!(msg.starts_with(&format!("t.toml:{line}:")), "{}", msg);
        prop_assert!(msg.chars().count() < 600, "{} chars: {}", msg.chars().count(), msg);
    }

    /// Any rule count up to the limit with one duplicate anywhere: the duplicate is reported
    /// at its own line, naming the first rule with that name.
    #[test]
    fn duplicate_is_reported_where_it_is(n in 2usize..400, a in 0usize..400, b in 0usize..400) {
        let (a, b) = (a % n, b % n);
        prop_assume!(a != b);
        let (first, dup) = (a.min(b), a.max(b));
        let mut s = String::from(DEV);
        for i in 0..n {
            let name = if i == dup { first } else { i };
            write!(s, "[[filter.rule]]\nname = \"r{name}\"\naction = \"drop\"\ndst_port = 53\n").unwrap();
        }
        let msg = err(&s);
        prop_assert!(msg.starts_with(&format!("t.toml:{}:", line_of_rule(dup) + 1)), "{}", msg);
        let want = format!("already used by filter rule {first}");
        prop_assert!(msg.contains(&want), "{}", msg);
    }
}
