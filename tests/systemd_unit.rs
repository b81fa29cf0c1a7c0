//! The systemd units in dist/systemd: `systemd-analyze verify` clean (where it exists), the
//! paths and capabilities agree with what `floodgate run` uses, and every directive is
//! explained in docs/systemd.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(root().join("dist/systemd").join(name)).unwrap()
}

/// `Key=value` lines of a unit (comments and sections left out), in order.
fn directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn values<'a>(d: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    d.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(d: &'a [(String, String)], key: &str) -> &'a str {
    let v = values(d, key);
    assert_eq!(v.len(), 1, "{key}: {v:?}");
    v[0]
}

fn has_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn the_units_agree_with_what_run_uses() {
    for (name, cfg, run_dir, state_dir) in [
        (
            "floodgate.service",
            "/etc/floodgate/floodgate.toml",
            "floodgate",
            "floodgate",
        ),
        (
            "floodgate@.service",
            "/etc/floodgate/%i.toml",
            "floodgate/%i",
            "floodgate/%i",
        ),
    ] {
        let d = directives(&unit(name));
        assert_eq!(one(&d, "Type"), "notify", "{name}");
        assert_eq!(
            one(&d, "ExecStart"),
            format!("/usr/bin/floodgate run --config {cfg}"),
            "{name}"
        );
        assert_eq!(
            one(&d, "ExecStartPre"),
            format!("/usr/bin/floodgate check-config {cfg}"),
            "{name}"
        );
        assert_eq!(one(&d, "ExecReload"), "/bin/kill -HUP $MAINPID", "{name}");
        assert_eq!(one(&d, "LimitMEMLOCK"), "infinity", "{name}");
        assert_eq!(one(&d, "NoNewPrivileges"), "yes", "{name}");
        assert_eq!(one(&d, "ProtectSystem"), "strict", "{name}");
        assert_eq!(one(&d, "PrivateTmp"), "yes", "{name}");
        assert_eq!(one(&d, "DevicePolicy"), "closed", "{name}");
        // The steering state file's directory must be root's and private (docs/config.md).
        assert_eq!(one(&d, "RuntimeDirectory"), run_dir, "{name}");
        assert_eq!(one(&d, "RuntimeDirectoryMode"), "0700", "{name}");
        assert_eq!(one(&d, "StateDirectory"), state_dir, "{name}");
        let rw: BTreeSet<&str> = one(&d, "ReadWritePaths").split_whitespace().collect();
        assert_eq!(
            rw,
            BTreeSet::from([
                format!("/run/{run_dir}").as_str(),
                format!("/var/lib/{state_dir}").as_str()
            ]),
            "{name}"
        );
        let devices: BTreeSet<&str> = values(&d, "DeviceAllow").into_iter().collect();
        assert_eq!(
            devices,
            BTreeSet::from(["/dev/vfio/vfio rw", "char-vfio rw", "/dev/net/tun rw"]),
            "{name}"
        );
        let caps: BTreeSet<&str> = one(&d, "CapabilityBoundingSet")
            .split_whitespace()
            .collect();
        assert_eq!(
            caps,
            BTreeSet::from(["CAP_NET_ADMIN", "CAP_IPC_LOCK", "CAP_SETUID", "CAP_SETGID"]),
            "{name}"
        );
        // A stop waits for the drain (1 s by default) and the removal of the steering rules.
        let stop: u64 = one(&d, "TimeoutStopSec")
            .trim_end_matches('s')
            .parse()
            .unwrap();
        assert!((5..=30).contains(&stop), "{name}: TimeoutStopSec {stop}");
        let dog: u64 = one(&d, "WatchdogSec")
            .trim_end_matches('s')
            .parse()
            .unwrap();
        assert!(
            dog >= 5,
            "{name}: WatchdogSec {dog} (the loop feeds it once per second)"
        );
    }
    // The default state file lives in the runtime directory of the plain unit.
    let cfg = std::fs::read_to_string(root().join("examples/floodgate.toml")).unwrap();
    assert!(cfg.contains("state_file = \"/run/floodgate/steering.json\""));
}

#[test]
fn every_directive_and_capability_is_explained() {
    let doc = std::fs::read_to_string(root().join("docs/systemd.md")).unwrap();
    for name in ["floodgate.service", "floodgate@.service"] {
        let d = directives(&unit(name));
        for (k, _) in &d {
            assert!(
                doc.contains(&format!("`{k}=")),
                "docs/systemd.md does not explain {k}="
            );
        }
        for cap in one(&d, "CapabilityBoundingSet").split_whitespace() {
            assert!(
                doc.contains(&format!("### {cap}")),
                "docs/systemd.md has no section on {cap}"
            );
        }
    }
}

/// The unit with the installed binary's path replaced by the one cargo built.
fn unit_for_verify(name: &str, dir: &Path) -> PathBuf {
    let text = unit(name).replace("/usr/bin/floodgate", env!("CARGO_BIN_EXE_floodgate"));
    let path = dir.join(name.replace("@.", "@verify."));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn systemd_analyze_verify_is_clean() {
    if !has_tool("systemd-analyze") {
        println!("skipped: systemd-analyze not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .args(["man", "--out"])
        .arg(man.join("man1"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let units: Vec<PathBuf> = ["floodgate.service", "floodgate@.service"]
        .iter()
        .map(|u| unit_for_verify(u, dir.path()))
        .collect();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify")
        .env("MANPATH", &man)
        .current_dir(dir.path());
    if !has_tool("man") {
        // Documentation=man:... is checked by running man(1).
        cmd.arg("--man=no");
    }
    let out = cmd.args(&units).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

/// The AF_XDP drop-in adds exactly what that backend needs on top of the unit (bpf(2) and
/// AF_XDP sockets), and the unit with the drop-in still verifies.
#[test]
fn the_af_xdp_drop_in_adds_what_the_backend_needs() {
    let drop_in = std::fs::read_to_string(root().join("dist/systemd/af-xdp.conf")).unwrap();
    let d = directives(&drop_in);
    let caps: BTreeSet<&str> = one(&d, "CapabilityBoundingSet").split(' ').collect();
    assert_eq!(caps, BTreeSet::from(["CAP_BPF", "CAP_NET_RAW"]));
    let fams: BTreeSet<&str> = one(&d, "RestrictAddressFamilies").split(' ').collect();
    assert_eq!(fams, BTreeSet::from(["AF_XDP", "AF_NETLINK"]));
    // Each added item is explained in docs/systemd.md.
    let doc = std::fs::read_to_string(root().join("docs/systemd.md")).unwrap();
    for item in caps.iter().chain(fams.iter()) {
        assert!(
            doc.contains(item),
            "docs/systemd.md does not explain {item}"
        );
    }
    assert!(
        doc.contains("af-xdp.conf"),
        "docs/systemd.md does not name the drop-in"
    );
    if !has_tool("systemd-analyze") {
        println!("skipped: systemd-analyze not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = unit_for_verify("floodgate.service", dir.path());
    let unit_d = dir.path().join("floodgate.service.d");
    std::fs::create_dir(&unit_d).unwrap();
    std::fs::write(unit_d.join("af-xdp.conf"), &drop_in).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .current_dir(dir.path())
        .arg(&base)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify with the AF_XDP drop-in: {}\n{stderr}",
        out.status
    );
}
