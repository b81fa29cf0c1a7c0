//! scripts/setup-vf.sh and scripts/teardown-vf.sh against a fake sysfs/procfs tree, with stub
//! `ip`, `ethtool` and `modprobe` on PATH that only record how they were called.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PF: &str = "enp3s0f0";
const PF_BDF: &str = "0000:03:00.0";
const VF_BDF: &str = "0000:03:10.0";

struct Host {
    tmp: tempfile::TempDir,
}

impl Host {
    /// A PF with 63 possible VFs and none created, whose VF 0 link is already there (the fake
    /// kernel cannot create it on the write), bound to `vf_driver`.
    fn new(vf_driver: &str) -> Host {
        let h = Host {
            tmp: tempfile::tempdir().unwrap(),
        };
        let pf = h.pci(PF_BDF);
        let vf = h.pci(VF_BDF);
        fs::create_dir_all(&pf).unwrap();
        fs::create_dir_all(&vf).unwrap();
        fs::write(pf.join("sriov_totalvfs"), "63\n").unwrap();
        fs::write(pf.join("sriov_numvfs"), "0\n").unwrap();
        symlink(format!("../{VF_BDF}"), pf.join("virtfn0")).unwrap();
        fs::write(vf.join("driver_override"), "(null)\n").unwrap();
        symlink("../../../../kernel/iommu_groups/42", vf.join("iommu_group")).unwrap();
        for d in ["ixgbevf", "vfio-pci"] {
            fs::create_dir_all(h.sys().join("bus/pci/drivers").join(d)).unwrap();
        }
        fs::write(h.sys().join("bus/pci/drivers_probe"), "").unwrap();
        h.bind(vf_driver);
        let net = h.sys().join("class/net").join(PF);
        fs::create_dir_all(&net).unwrap();
        symlink(&pf, net.join("device")).unwrap();
        fs::write(net.join("address"), "a0:36:9f:12:34:56\n").unwrap();
        let vm = h.proc().join("sys/vm");
        fs::create_dir_all(&vm).unwrap();
        fs::write(vm.join("nr_hugepages"), "0\n").unwrap();
        let bin = h.tmp.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        for cmd in ["ip", "ethtool", "modprobe"] {
            let p = bin.join(cmd);
            fs::write(
                &p,
                format!(
                    "#!/bin/sh\necho \"{cmd} $*\" >> '{}'\n",
                    h.tmp.path().join("calls").display()
                ),
            )
            .unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        h
    }

    fn sys(&self) -> PathBuf {
        self.tmp.path().join("sys")
    }
    fn proc(&self) -> PathBuf {
        self.tmp.path().join("proc")
    }
    fn pci(&self, bdf: &str) -> PathBuf {
        self.sys().join("bus/pci/devices").join(bdf)
    }
    fn bind(&self, driver: &str) {
        let link = self.pci(VF_BDF).join("driver");
        let _ = fs::remove_file(&link);
        symlink(format!("../../../../bus/pci/drivers/{driver}"), link).unwrap();
    }
    fn read(&self, p: impl AsRef<Path>) -> String {
        fs::read_to_string(p).unwrap_or_default()
    }
    fn calls(&self) -> String {
        self.read(self.tmp.path().join("calls"))
    }

    fn run(&self, script: &str, args: &[&str]) -> Output {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts")
            .join(script);
        let bin = self.tmp.path().join("bin");
        let mut cmd = Command::new("bash");
        cmd.arg(path)
            .args(["--sysfs", self.sys().to_str().unwrap()])
            .args(args)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            );
        if script == "setup-vf.sh" {
            cmd.args(["--procfs", self.proc().to_str().unwrap(), "--timeout", "0"]);
        }
        cmd.output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn full_setup_when_vf_is_already_on_vfio_pci() {
    let h = Host::new("vfio-pci");
    let out = h.run("setup-vf.sh", &[PF, "0"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout), format!("{VF_BDF}\n"));
    assert_eq!(h.read(h.pci(PF_BDF).join("sriov_numvfs")), "1\n");
    assert_eq!(
        h.calls(),
        format!(
            "ip link set {PF} vf 0 mac 02:9f:12:34:56:00\n\
             ip link set {PF} vf 0 trust on\n\
             ip link set {PF} vf 0 spoofchk off\n\
             ethtool -K {PF} ntuple on\n"
        )
    );
    assert_eq!(h.read(h.proc().join("sys/vm/nr_hugepages")), "512\n");
    // Already bound: no rebind writes.
    assert_eq!(h.read(h.sys().join("bus/pci/drivers_probe")), "");
    assert!(err.contains("IOMMU group 42"), "{err}");
}

#[test]
fn rebind_from_ixgbevf_writes_unbind_override_and_probe() {
    let h = Host::new("ixgbevf");
    let out = h.run(
        "setup-vf.sh",
        &["--mac", "02:00:00:00:00:07", "--spoofchk", "on", PF, "0"],
    );
    let err = text(&out.stderr);
    assert_eq!(
        h.read(h.sys().join("bus/pci/drivers/ixgbevf/unbind")),
        format!("{VF_BDF}\n")
    );
    assert_eq!(h.read(h.pci(VF_BDF).join("driver_override")), "vfio-pci\n");
    assert_eq!(
        h.read(h.sys().join("bus/pci/drivers_probe")),
        format!("{VF_BDF}\n")
    );
    assert!(h.calls().contains("vf 0 mac 02:00:00:00:00:07"));
    assert!(h.calls().contains("vf 0 spoofchk on"));
    // The fake kernel does not rebind, so the script must notice and say so.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bound to 'ixgbevf', not vfio-pci"), "{err}");
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn dry_run_prints_every_step_and_changes_nothing() {
    let h = Host::new("ixgbevf");
    let out = h.run(
        "setup-vf.sh",
        &["--dry-run", "--hugepages", "1024", PF, "0"],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout), format!("{VF_BDF}\n"));
    let sys = h.sys();
    let sys = sys.display();
    for step in [
        format!("+ echo 1 > {sys}/class/net/{PF}/device/sriov_numvfs"),
        format!("+ ip link set {PF} vf 0 mac 02:9f:12:34:56:00"),
        format!("+ ip link set {PF} vf 0 trust on"),
        format!("+ ethtool -K {PF} ntuple on"),
        format!("+ echo 1024 > {}/sys/vm/nr_hugepages", h.proc().display()),
        format!("+ echo {VF_BDF} > {sys}/bus/pci/devices/{VF_BDF}/driver/unbind"),
        format!("+ echo vfio-pci > {sys}/bus/pci/devices/{VF_BDF}/driver_override"),
        format!("+ echo {VF_BDF} > {sys}/bus/pci/drivers_probe"),
    ] {
        assert!(err.contains(&step), "missing {step:?} in:\n{err}");
    }
    assert_eq!(h.calls(), "");
    assert_eq!(h.read(h.pci(PF_BDF).join("sriov_numvfs")), "0\n");
    assert_eq!(h.read(h.proc().join("sys/vm/nr_hugepages")), "0\n");
    assert_eq!(h.read(h.pci(VF_BDF).join("driver_override")), "(null)\n");
}

#[test]
fn changing_an_existing_vf_count_goes_through_zero() {
    let h = Host::new("vfio-pci");
    fs::write(h.pci(PF_BDF).join("sriov_numvfs"), "1\n").unwrap();
    let out = h.run("setup-vf.sh", &["--dry-run", "--num-vfs", "4", PF, "0"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let zero = err.find("+ echo 0 > ").expect(&err);
    let four = err.find("+ echo 4 > ").expect(&err);
    assert!(zero < four, "{err}");
}

#[test]
fn bad_arguments_and_missing_pf_are_explained() {
    let h = Host::new("vfio-pci");
    let cases: &[(&[&str], &str)] = &[
        (&["eth9", "0"], "no network interface eth9"),
        (
            &[PF, "63"],
            "supports 63 VFs, so VF index 63 does not exist",
        ),
        (&[PF, "x"], "VF index 'x' is not a number"),
        (&["--mac", "zz", PF, "0"], "is not a MAC address"),
        (&["--trust", "yes", PF, "0"], "--trust takes on or off"),
        (
            &["--num-vfs", "1", PF, "3"],
            "must be more than the VF index 3",
        ),
        (&[PF], "expected <pf-netdev> <vf-index>"),
    ];
    for (args, want) in cases {
        let out = h.run("setup-vf.sh", args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    fs::remove_file(h.pci(PF_BDF).join("sriov_totalvfs")).unwrap();
    let err = text(&h.run("setup-vf.sh", &[PF, "0"]).stderr);
    assert!(err.contains("does not support SR-IOV"), "{err}");
    assert_eq!(h.calls(), "");
}

#[test]
fn missing_vf_after_creation_is_an_error() {
    let h = Host::new("vfio-pci");
    fs::remove_file(h.pci(PF_BDF).join("virtfn0")).unwrap();
    let out = h.run("setup-vf.sh", &[PF, "0"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("VF 0 of enp3s0f0 did not appear"), "{err}");
}

#[test]
fn teardown_unbinds_clears_override_and_reprobes() {
    let h = Host::new("vfio-pci");
    fs::write(h.pci(VF_BDF).join("driver_override"), "vfio-pci\n").unwrap();
    fs::write(h.pci(PF_BDF).join("sriov_numvfs"), "1\n").unwrap();
    let out = h.run("teardown-vf.sh", &[PF, "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        h.read(h.sys().join("bus/pci/drivers/vfio-pci/unbind")),
        format!("{VF_BDF}\n")
    );
    assert_eq!(h.read(h.pci(VF_BDF).join("driver_override")), "\n");
    assert_eq!(
        h.read(h.sys().join("bus/pci/drivers_probe")),
        format!("{VF_BDF}\n")
    );
    assert_eq!(h.read(h.pci(PF_BDF).join("sriov_numvfs")), "1\n");

    let out = h.run("teardown-vf.sh", &["--remove-vfs", PF, "0"]);
    assert!(out.status.success());
    assert_eq!(h.read(h.pci(PF_BDF).join("sriov_numvfs")), "0\n");
}

#[test]
fn teardown_leaves_other_drivers_alone_and_dry_run_changes_nothing() {
    let h = Host::new("ixgbevf");
    let out = h.run("teardown-vf.sh", &["--dry-run", "--remove-vfs", PF, "0"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("bound to ixgbevf, not vfio-pci; leaving"),
        "{err}"
    );
    assert!(err.contains("+ echo 0 > "), "{err}");
    assert!(!h.sys().join("bus/pci/drivers/ixgbevf/unbind").exists());
    assert_eq!(h.read(h.pci(VF_BDF).join("driver_override")), "(null)\n");
}
