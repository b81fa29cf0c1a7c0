//! scripts/build-deb.sh: the package holds the binary, both units, the example config as a
//! conffile, a man page per subcommand, completions, the VF scripts, the dashboard and the docs;
//! the units' binary and config paths are files of the package; the packaged binary checks the
//! packaged config. Skipped with one line where dpkg-deb is missing.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn has_dpkg_deb() -> bool {
    Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `Key=value` values of a unit.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_package_holds_the_kit_and_its_paths_agree() {
    if !has_dpkg_deb() {
        println!("skipped: dpkg-deb not installed (it comes with dpkg)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = env!("CARGO_BIN_EXE_floodgate");
    let out = tempfile::tempdir().unwrap();
    let deb = run(Command::new("bash")
        .arg(root.join("scripts/build-deb.sh"))
        .args(["--fast", "--binary", bin, "--out"])
        .arg(out.path())
        .current_dir(root));
    let deb = deb.trim();
    assert!(deb.ends_with(".deb") && Path::new(deb).is_file(), "{deb}");

    // Control fields.
    let field = |f: &str| {
        run(Command::new("dpkg-deb").args(["-f", deb, f]))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "floodgate");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let ctrl = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").args(["-e", deb]).arg(ctrl.path()));
    let conffiles = std::fs::read_to_string(ctrl.path().join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/floodgate/floodgate.toml");

    // The file list.
    let listing = run(Command::new("dpkg-deb").args(["-c", deb]));
    let files: BTreeSet<String> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            l.split_whitespace()
                .last()
                .unwrap()
                .trim_start_matches('.')
                .to_string()
        })
        .collect();
    let mut want: Vec<String> = [
        "/usr/bin/floodgate",
        "/usr/lib/systemd/system/floodgate.service",
        "/usr/lib/systemd/system/floodgate@.service",
        "/etc/floodgate/floodgate.toml",
        "/usr/share/bash-completion/completions/floodgate",
        "/usr/share/zsh/vendor-completions/_floodgate",
        "/usr/share/fish/vendor_completions.d/floodgate.fish",
        "/usr/sbin/floodgate-setup-vf",
        "/usr/sbin/floodgate-teardown-vf",
        "/usr/share/floodgate/grafana/floodgate.json",
        "/usr/share/floodgate/systemd/af-xdp.conf",
        "/usr/share/doc/floodgate/README.md",
        "/usr/share/doc/floodgate/copyright",
        "/usr/share/doc/floodgate/docs/hardware-setup.md",
        "/usr/share/doc/floodgate/docs/systemd.md",
        "/usr/share/man/man1/floodgate.1.gz",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A man page per subcommand, as the binary generates them.
    let man = tempfile::tempdir().unwrap();
    run(Command::new(bin).args(["man", "--out"]).arg(man.path()));
    for e in std::fs::read_dir(man.path()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        want.push(format!("/usr/share/man/man1/{name}.gz"));
    }
    assert!(want.len() > 20, "{want:?}");
    for w in &want {
        assert!(files.contains(w), "the package lacks {w}:\n{listing}");
    }
    for line in listing.lines() {
        let path = line.split_whitespace().last().unwrap();
        if line.starts_with('-')
            && (path.starts_with("./usr/bin/") || path.starts_with("./usr/sbin/"))
        {
            assert!(line.starts_with("-rwxr-xr-x root/root"), "{line}");
        }
    }

    // Unpacked: the units' paths are files of the package, and they agree.
    let x = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").args(["-x", deb]).arg(x.path()));
    let unit =
        std::fs::read_to_string(x.path().join("usr/lib/systemd/system/floodgate.service")).unwrap();
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(
        argv[..3],
        ["/usr/bin/floodgate", "run", "--config"],
        "{argv:?}"
    );
    let config = argv[3];
    for p in [argv[0], config] {
        assert!(
            files.contains(p),
            "ExecStart names {p}, which the package does not hold"
        );
    }
    let docs = unit_values(&unit, "Documentation").join(" ");
    for d in docs.split_whitespace() {
        if let Some(p) = d.strip_prefix("file://") {
            assert!(files.contains(p), "Documentation={d} is not in the package");
        } else if let Some(page) = d.strip_prefix("man:") {
            let (name, sect) = page.trim_end_matches(')').split_once('(').unwrap();
            let p = format!("/usr/share/man/man{sect}/{name}.{sect}.gz");
            assert!(
                files.contains(&p),
                "Documentation={d}: {p} is not in the package"
            );
        }
    }
    let inst = std::fs::read_to_string(x.path().join("usr/lib/systemd/system/floodgate@.service"))
        .unwrap();
    assert!(unit_values(&inst, "ExecStart")[0].ends_with("--config /etc/floodgate/%i.toml"));

    // The packaged binary is the one given, and it accepts the packaged config.
    let packaged = x.path().join("usr/bin/floodgate");
    let version = run(Command::new(&packaged).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("floodgate {}", env!("CARGO_PKG_VERSION"))
    );
    let cfg = x.path().join(config.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        std::fs::read_to_string(root.join("examples/floodgate.toml")).unwrap()
    );
    let checked = Command::new(&packaged)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "the packaged config does not check: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // The bash completion in the package is the binary's own.
    let bash = std::fs::read_to_string(
        x.path()
            .join("usr/share/bash-completion/completions/floodgate"),
    )
    .unwrap();
    assert_eq!(bash, run(Command::new(bin).args(["completions", "bash"])));
}
