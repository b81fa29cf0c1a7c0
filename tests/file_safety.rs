//! Files floodgate writes are never written through a planted symbolic link, are private
//! (0600), and `rules test` leaves the config's sample files alone.

use floodgate::daemon::rules_test;
use floodgate::pcapfile::{PcapReader, PcapWriter, RotatingPcapWriter, RotationPolicy};
use floodgate::steering::{Action, Flow, SimBackend, Steering, SteeringRule};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("floodgate-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

fn frame(n: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12] = 0x08;
    f[13] = 0x06;
    f[59] = n;
    f
}

fn records(p: &Path) -> Vec<u8> {
    let mut r = PcapReader::open(p).unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while r.next_record(&mut buf).unwrap().is_some() {
        out.push(buf[59]);
    }
    out
}

fn policy(path: PathBuf, max_files: u32) -> RotationPolicy {
    RotationPolicy {
        path,
        max_bytes: 24 + 2 * (16 + 60),
        max_files,
        snaplen: 65535,
        format: Default::default(),
        rule: String::new(),
    }
}

#[test]
fn symlink_at_the_sample_path_is_refused_and_its_target_untouched() {
    let d = tmpdir("sample-link");
    let target = d.join("precious");
    std::fs::write(&target, b"keep me").unwrap();
    let path = d.join("s.pcap");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let mut w = RotatingPcapWriter::new(policy(path.clone(), 3));
    let e = w.write_frame(1, &frame(1)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("symbolic link"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    // A dangling link is refused too, and nothing is created at its target.
    let ghost = d.join("ghost");
    let path2 = d.join("t.pcap");
    std::os::unix::fs::symlink(&ghost, &path2).unwrap();
    let mut w = RotatingPcapWriter::new(policy(path2, 3));
    assert!(w.write_frame(1, &frame(1)).is_err());
    assert!(!ghost.exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn captures_are_private_and_an_old_capture_is_rotated_not_truncated() {
    let d = tmpdir("sample-mode");
    let path = d.join("s.pcap");
    // An earlier run's capture, world-readable as older versions left it.
    {
        let f = std::fs::File::create(&path).unwrap();
        let mut w = PcapWriter::new(f, 65535).unwrap();
        w.write_frame(0, &frame(99)).unwrap();
        w.flush().unwrap();
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut w = RotatingPcapWriter::new(policy(path.clone(), 3));
    for n in 1..=5 {
        w.write_frame(u64::from(n), &frame(n)).unwrap();
    }
    w.flush().unwrap();
    assert_eq!(records(&path), [5]);
    assert_eq!(records(&d.join("s.pcap.1")), [3, 4]);
    assert_eq!(records(&d.join("s.pcap.2")), [1, 2]);
    // The earlier capture was rotated out of the three kept files, never truncated in place.
    assert!(!d.join("s.pcap.3").exists());
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&d.join("s.pcap.1")), 0o600);
    assert_eq!(mode(&d.join("s.pcap.2")), 0o600);
    // A symlink planted at a rotated name is moved or deleted as an entry, never followed.
    let target = d.join("precious");
    std::fs::write(&target, b"keep me").unwrap();
    std::fs::remove_file(d.join("s.pcap.2")).unwrap();
    std::os::unix::fs::symlink(&target, d.join("s.pcap.2")).unwrap();
    for n in 6..=9 {
        w.write_frame(u64::from(n), &frame(n)).unwrap();
    }
    w.flush().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert_eq!(records(&path), [9]);
    std::fs::remove_dir_all(&d).unwrap();
}

fn rule() -> SteeringRule {
    SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 })
        .dst_net(Ipv4Addr::new(192, 0, 2, 1), 32)
        .dst_port(53)
}

#[test]
fn symlink_at_the_state_file_or_its_temporary_is_refused() {
    for planted in ["steering.json", "steering.json.tmp"] {
        let d = tmpdir(&format!("state-{planted}"));
        let state_dir = d.join("floodgate");
        std::fs::create_dir(&state_dir).unwrap();
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = d.join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        std::os::unix::fs::symlink(&target, state_dir.join(planted)).unwrap();
        let path = state_dir.join("steering.json");
        let mut s = Steering::new(SimBackend::standalone("sim0", 2046), Some(path.clone()));
        let e = s.install(&[rule()]).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{planted}: {e}");
        assert!(e.contains(&path.display().to_string()), "{planted}: {e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me", "{planted}");
        assert!(s.installed().is_empty(), "no rule installed without state");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn state_file_is_private_and_its_directory_must_be_ours_alone() {
    let d = tmpdir("state-mode");
    let path = d.join("floodgate/steering.json");
    let mut s = Steering::new(SimBackend::standalone("sim0", 2046), Some(path.clone()));
    s.install(&[rule()]).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert!(!d.join("floodgate/steering.json.tmp").exists());
    s.remove_all().unwrap();
    assert!(!path.exists());
    // A directory others can write is refused with what to do about it.
    let open = d.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut s = Steering::new(
        SimBackend::standalone("sim0", 2046),
        Some(open.join("steering.json")),
    );
    let e = s.install(&[rule()]).unwrap_err().to_string();
    assert!(e.contains("writable by nobody else"), "{e}");
    assert!(e.contains("chmod 0700"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

fn write_capture(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(f, 65535).unwrap();
    for n in 0..6 {
        w.write_frame(u64::from(n), &frame(n)).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn rules_test_writes_samples_only_where_asked() {
    let d = tmpdir("rules-test");
    let pcap = d.join("in.pcap");
    write_capture(&pcap);
    let live = d.join("live");
    std::fs::create_dir(&live).unwrap();
    let sample_path = live.join("dns.pcap");
    // A live sample file, and a symlink at a second rule's sample path.
    std::fs::write(&sample_path, b"live capture").unwrap();
    let target = d.join("precious");
    std::fs::write(&target, b"keep me").unwrap();
    std::os::unix::fs::symlink(&target, live.join("link.pcap")).unwrap();
    let cfg = d.join("f.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[device]
pci = "sim"
[filter]
default = "pass"
[[filter.rule]]
name = "s1"
action = "sample"
every = 1
path = "{}"
[[filter.rule]]
name = "s2"
action = "sample"
every = 2
path = "{}"
"#,
            sample_path.display(),
            live.join("link.pcap").display()
        ),
    )
    .unwrap();
    let before: Vec<_> = std::fs::read_dir(&live).unwrap().collect();
    let t = rules_test(&pcap, &cfg, false, None).unwrap();
    assert_eq!(t.frames, 6);
    assert_eq!(std::fs::read(&sample_path).unwrap(), b"live capture");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&live).unwrap().count(), before.len());

    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    rules_test(&pcap, &cfg, false, Some(&out)).unwrap();
    assert_eq!(records(&out.join("dns.pcap")), [0, 1, 2, 3, 4, 5]);
    assert_eq!(records(&out.join("link.pcap")), [0, 2, 4]);
    assert_eq!(mode(&out.join("dns.pcap")), 0o600);
    assert_eq!(std::fs::read(&sample_path).unwrap(), b"live capture");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    std::fs::remove_dir_all(&d).unwrap();
}
