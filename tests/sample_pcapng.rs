//! Sample rules writing pcapng (`format = "pcapng"`): the config key, the file (interface
//! description, per-packet comments naming the rule), rotation, and tcpdump reading it.

use floodgate::config::Config;
use floodgate::filter::Decision;
use floodgate::pcapfile::PcapReader;
use floodgate_sim::generator::build_udp4;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fg-pcapng-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(path: &Path, extra: &str) -> String {
    format!(
        "[device]\npci = \"sim\"\n\n[filter]\ndefault = \"pass\"\n\n\
         [[filter.rule]]\nname = \"dns-sample\"\naction = \"sample\"\nproto = \"udp\"\n\
         every = 2\npath = \"{}\"\n{extra}\n\
         [[filter.rule]]\nname = \"dns-flood\"\naction = \"drop\"\nproto = \"udp\"\ndst_port = 53\n",
        path.display()
    )
}

fn frame(n: u8) -> Vec<u8> {
    let mut f = vec![0u8; 128];
    let len = build_udp4(
        &mut f,
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        [198, 18, 0, n],
        [192, 0, 2, 1],
        40000,
        53,
        &[0xAB; 30],
    )
    .unwrap();
    f.truncate(len);
    f
}

/// Source address bytes' last octet of every record in `p`, and whether it is pcapng.
fn read(p: &Path) -> (bool, Vec<u8>) {
    let mut r = PcapReader::open(p).unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while r.next_record(&mut buf).unwrap().is_some() {
        out.push(buf[29]);
    }
    (r.is_pcapng(), out)
}

#[test]
fn a_pcapng_sample_rule_writes_comments_rotates_and_tcpdump_reads_it() {
    let dir = tmpdir("rotate");
    let path = dir.join("s.pcapng");
    // Room for the header blocks and about three records per file.
    let cfg = Config::from_str_named(
        &config(
            &path,
            "format = \"pcapng\"\nmax_bytes = 1024\nmax_files = 3",
        ),
        "t.toml",
    )
    .unwrap();
    let mut rs = cfg.filter.ruleset();
    for n in 0..40u8 {
        let v = rs.classify(&frame(n), 1_700_000_000_000_000_000 + u64::from(n));
        assert_eq!(v.action, Decision::Drop, "sampling is not terminal");
    }
    rs.flush_samples().unwrap();
    let c = &rs.counters().rules[0];
    assert_eq!((c.sampled, c.sample_errors), (20, 0));

    let (ng, current) = read(&path);
    assert!(ng, "the current file is pcapng");
    let (_, older) = read(&dir.join("s.pcapng.1"));
    let (_, oldest) = read(&dir.join("s.pcapng.2"));
    assert!(!dir.join("s.pcapng.3").exists(), "max_files = 3");
    // Every other frame, newest last, split over the three files without a gap.
    let all: Vec<u8> = oldest
        .iter()
        .chain(&older)
        .chain(&current)
        .copied()
        .collect();
    assert!(all.len() >= 6 && !current.is_empty(), "{all:?}");
    let want: Vec<u8> = (0..40u8).step_by(2).collect();
    assert_eq!(all[..], want[want.len() - all.len()..]);
    for f in ["s.pcapng", "s.pcapng.1"] {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() <= 1024, "{f}");
    }

    let bytes = std::fs::read(&path).unwrap();
    let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("floodgate"), "interface name");
    assert!(has(
        "frames sampled by rule \"dns-sample\" before the verdict"
    ));
    assert!(has("sampled by rule \"dns-sample\""), "per-packet comment");

    match Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&path)
        .output()
    {
        Err(e) => println!("skipped: tcpdump -r (tcpdump not runnable: {e})"),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(text.lines().count(), current.len(), "{text}");
            assert!(
                text.contains("198.18.0.") && text.contains("192.0.2.1.53"),
                "{text}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pcap_stays_the_default_and_the_format_key_is_checked() {
    let dir = tmpdir("default");
    let path = dir.join("s.pcap");
    let cfg = Config::from_str_named(&config(&path, ""), "t.toml").unwrap();
    let mut rs = cfg.filter.ruleset();
    rs.classify(&frame(1), 1);
    rs.flush_samples().unwrap();
    assert_eq!(read(&path), (false, vec![1]));
    let e = Config::from_str_named(&config(&path, "format = \"pcap-ng\""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("format = \"pcap-ng\" is not \"pcap\" or \"pcapng\""),
        "{e}"
    );
    assert!(e.contains("dns-sample"), "{e}");
    let stray = Config::from_str_named(
        "[device]\npci = \"sim\"\n[filter]\ndefault = \"pass\"\n[[filter.rule]]\nname = \"x\"\n\
         action = \"drop\"\nformat = \"pcapng\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        stray.contains("`format` only applies to action = \"sample\""),
        "{stray}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
