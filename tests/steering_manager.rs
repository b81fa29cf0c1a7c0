//! The steering manager against the model's PF table (ixgbe's rules: one mask per port, EINVAL
//! for an empty location, EOPNOTSUPP with n-tuple off), and the real kernel's answers on
//! interfaces that have no flow director.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use floodgate::steering::state::StateFile;
use floodgate::steering::{
    explain_errno, validate_rules, weight_table, Action, EthtoolBackend, Flow, SimBackend,
    Steering, SteeringBackend, SteeringError, SteeringRule,
};

fn tmp_state(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "floodgate-steer-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("floodgate/steering.json")
}

fn dns(dst: [u8; 4]) -> SteeringRule {
    SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 })
        .dst_net(Ipv4Addr::from(dst), 32)
        .dst_port(53)
}

#[test]
fn install_records_state_and_remove_cleans_up() {
    let path = tmp_state("basic");
    let mut s = Steering::new(SimBackend::standalone("sim0", 2046), Some(path.clone()));
    let rep = s
        .install(&[dns([192, 0, 2, 1]), dns([192, 0, 2, 2]).at(5)])
        .unwrap();
    let locs: Vec<u32> = rep.installed.iter().map(|i| i.location).collect();
    assert_eq!(locs, vec![2045, 5]);
    assert!(rep.leftovers_removed.is_empty());
    let st = StateFile::new(path.clone()).read().unwrap().unwrap();
    assert_eq!(st.pf, "sim0");
    assert_eq!(st.locations, vec![2045, 5]);
    assert_eq!(st.pid, std::process::id());
    let table = s.backend_mut().rule_table().unwrap();
    assert_eq!(table.locations, vec![5, 2045]);
    // The model decodes what was inserted: dst 192.0.2.2:53 to VF 0 at 5.
    let rules = s.backend().rules();
    assert_eq!(rules[0].1.dst_ip, Ipv4Addr::new(192, 0, 2, 2));
    assert_eq!(rules[0].1.action, Action::ToVf { vf: 0, queue: 0 });

    assert_eq!(s.remove_all().unwrap(), 2);
    assert!(s.backend_mut().rule_table().unwrap().locations.is_empty());
    assert!(!path.exists(), "state file deleted on clean exit");
}

#[test]
fn leftovers_of_a_crash_are_deleted_and_replaced() {
    let path = tmp_state("crash");
    let mut s = Steering::new(SimBackend::standalone("sim0", 2046), Some(path.clone()));
    s.install(&[dns([192, 0, 2, 1]), dns([192, 0, 2, 2])])
        .unwrap();
    // Crash: the process goes away without removing anything.
    let backend = s.into_backend();
    assert!(path.exists());

    let mut s2 = Steering::new(backend, Some(path.clone()));
    let rep = s2.install(&[dns([198, 51, 100, 9])]).unwrap();
    let mut removed = rep.leftovers_removed.clone();
    removed.sort_unstable();
    assert_eq!(removed, vec![2044, 2045]);
    // Only the new rule is on the port.
    let rules = s2.backend().rules();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].1.dst_ip, Ipv4Addr::new(198, 51, 100, 9));
    assert_eq!(
        StateFile::new(path.clone())
            .read()
            .unwrap()
            .unwrap()
            .locations,
        vec![rules[0].0]
    );
    s2.remove_all().unwrap();
    assert!(!path.exists());
}

#[test]
fn a_leftover_location_reused_by_someone_else_is_left_alone() {
    let path = tmp_state("reused");
    let mut s = Steering::new(SimBackend::standalone("sim0", 2046), Some(path.clone()));
    s.install(&[dns([192, 0, 2, 1])]).unwrap();
    let mut backend = s.into_backend();
    // After the crash an operator deleted it and put their own rule there.
    backend.delete(2045).unwrap();
    let theirs = dns([203, 0, 113, 5]);
    backend.insert_foreign(&theirs, 2045).unwrap();

    let mut s2 = Steering::new(backend, Some(path));
    let rep = s2.install(&[dns([192, 0, 2, 1])]).unwrap();
    assert_eq!(rep.leftovers_kept, vec![2045]);
    assert!(rep.leftovers_removed.is_empty());
    assert_eq!(rep.installed[0].location, 2044);
    s2.remove_all().unwrap();
    let left = s2.backend().rules();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, 2045);
    assert_eq!(left[0].1.dst_ip, Ipv4Addr::new(203, 0, 113, 5));
}

#[test]
fn rules_that_are_not_ours_are_never_touched() {
    let mut b = SimBackend::standalone("sim0", 2046);
    b.insert_foreign(&dns([10, 0, 0, 1]), 2045).unwrap();
    b.insert_foreign(&dns([10, 0, 0, 2]), 7).unwrap();
    let mut s = Steering::new(b, None);
    let rep = s
        .install(&[dns([10, 0, 0, 3]), dns([10, 0, 0, 4])])
        .unwrap();
    let locs: Vec<u32> = rep.installed.iter().map(|i| i.location).collect();
    assert_eq!(locs, vec![2044, 2043]);

    // An explicit location on a foreign rule is refused before the kernel is asked.
    let err = s.install(&[dns([10, 0, 0, 5]).at(7)]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("rule 1"), "{msg}");
    assert!(msg.contains("location 7"), "{msg}");
    assert!(msg.contains("ethtool -N sim0 delete 7"), "{msg}");

    s.remove_all().unwrap();
    let left: Vec<u32> = s.backend().rules().iter().map(|r| r.0).collect();
    assert_eq!(left, vec![7, 2045]);
}

#[test]
fn kernel_refusal_is_explained_and_rolled_back() {
    // A foreign rule with an exact-port mask is on the port; ours uses a /24 destination, so
    // ixgbe refuses the second mask.
    let path = tmp_state("refused");
    let mut b = SimBackend::standalone("sim0", 2046);
    b.insert_foreign(&dns([10, 0, 0, 1]), 0).unwrap();
    let mut s = Steering::new(b, Some(path.clone()));
    let r = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 })
        .dst_net(Ipv4Addr::new(10, 1, 0, 0), 24)
        .dst_port(53);
    let err = s.install(&[r]).unwrap_err();
    match &err {
        SteeringError::Kernel { errno, msg, op, .. } => {
            assert_eq!(*errno, libc::EINVAL);
            assert!(msg.contains("one mask per port"), "{msg}");
            assert!(op.contains("rule 1"), "{op}");
            assert!(op.contains("location 2045"), "{op}");
        }
        other => panic!("expected a kernel refusal, got {other:?}"),
    }
    assert_eq!(
        s.backend().rules().len(),
        1,
        "only the foreign rule remains"
    );
    assert!(s.installed().is_empty());
    assert!(!path.exists(), "nothing recorded after a rollback");
}

#[test]
fn partial_install_is_rolled_back() {
    // Two VFs exist; the second rule targets VF 5, which the model refuses.
    let mut b = SimBackend::standalone("sim0", 2046);
    b.set_layout(4, 2, 2);
    let mut s = Steering::new(b, None);
    let bad = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 5, queue: 0 })
        .dst_net(Ipv4Addr::new(192, 0, 2, 9), 32)
        .dst_port(53);
    let err = s.install(&[dns([192, 0, 2, 1]), bad]).unwrap_err();
    assert!(err.to_string().contains("rule 2"), "{err}");
    assert!(s.backend().rules().is_empty(), "rule 1 was deleted again");
}

#[test]
fn ntuple_off_says_how_to_turn_it_on() {
    let mut b = SimBackend::standalone("sim0", 2046);
    b.set_ntuple(false);
    let mut s = Steering::new(b, None);
    let err = s.install(&[dns([192, 0, 2, 1])]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("ethtool -K sim0 ntuple on"), "{msg}");
}

#[test]
fn userspace_validation_names_the_rule() {
    let a = dns([192, 0, 2, 1]);
    let b = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 })
        .dst_net(Ipv4Addr::new(192, 0, 2, 0), 24)
        .dst_port(53);
    let msg = validate_rules(&[a.clone(), b]).unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "ixgbe accepts one mask per port: rule 2 uses a different mask than rule 1"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("destination address mask 255.255.255.0 vs 255.255.255.255"),
        "{msg}"
    );

    let named = dns([192, 0, 2, 7]).named("dns-b");
    let any_ip4 = SteeringRule::new(Flow::Ip4 { proto: None }, Action::Drop)
        .dst_net(Ipv4Addr::new(192, 0, 2, 3), 32);
    let msg = validate_rules(&[named.clone(), any_ip4])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("protocol-less ip4 rule"), "{msg}");

    let mut ports = SteeringRule::new(Flow::Ip4 { proto: None }, Action::Drop);
    ports.dst_port_mask = 0xffff;
    let msg = validate_rules(&[ports]).unwrap_err().to_string();
    assert!(
        msg.contains("rule 1: ixgbe matches ports only with a protocol"),
        "{msg}"
    );

    let icmp = SteeringRule::new(Flow::Ip4 { proto: Some(1) }, Action::Drop);
    let msg = validate_rules(&[icmp]).unwrap_err().to_string();
    assert!(msg.contains("protocol 1"), "{msg}");

    let vf = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 255, queue: 0 });
    assert!(validate_rules(&[vf])
        .unwrap_err()
        .to_string()
        .contains("8 bits"));

    let dup = validate_rules(&[a.clone(), a.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        dup.contains("rule 2: matches exactly the same packets as rule 1"),
        "{dup}"
    );

    let l = validate_rules(&[a.clone().at(3), dns([192, 0, 2, 8]).named("x").at(3)])
        .unwrap_err()
        .to_string();
    assert!(
        l.contains("rule 2 (\"x\"): location 3 is also given to rule 1"),
        "{l}"
    );

    let msg = Flow::from_name("udp6").unwrap_err().to_string();
    assert!(msg.contains("IPv4 flows only"), "{msg}");
    assert_eq!(Flow::from_name("sctp4").unwrap(), Flow::Sctp4);

    // Out of the table and to a PF ring that does not exist: caught after listing the table.
    let mut s = Steering::new(SimBackend::standalone("sim0", 2046), None);
    let msg = s.install(&[a.clone().at(2046)]).unwrap_err().to_string();
    assert!(msg.contains("locations 0..=2045"), "{msg}");
    let pf = SteeringRule::new(Flow::Udp4, Action::ToPf { queue: 9 }).dst_port(53);
    let msg = s.install(&[pf]).unwrap_err().to_string();
    assert!(
        msg.contains("has 4 RX rings, so queue 9 does not exist"),
        "{msg}"
    );
}

#[test]
fn full_table_is_reported() {
    let mut b = SimBackend::standalone("sim0", 3);
    b.insert_foreign(&dns([10, 0, 0, 1]), 0).unwrap();
    b.insert_foreign(&dns([10, 0, 0, 2]), 2).unwrap();
    let mut s = Steering::new(b, None);
    let err = s
        .install(&[dns([10, 0, 0, 3]), dns([10, 0, 0, 4])])
        .unwrap_err();
    assert!(matches!(err, SteeringError::Full { .. }), "{err:?}");
    assert!(err.to_string().contains("rule 2"), "{err}");
}

#[test]
fn state_file_problems_are_reported() {
    let path = tmp_state("corrupt");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{not json").unwrap();
    let mut s = Steering::new(SimBackend::standalone("sim0", 2046), Some(path.clone()));
    let err = s.install(&[dns([192, 0, 2, 1])]).unwrap_err();
    assert!(matches!(err, SteeringError::State { .. }), "{err:?}");
    assert!(s.backend().rules().is_empty());

    // A state file of another PF is left alone (with a warning) and then replaced by ours.
    std::fs::write(
        &path,
        r#"{"version":1,"pf":"eth9","pid":1,"locations":[4],"rules":[]}"#,
    )
    .unwrap();
    let rep = s.install(&[dns([192, 0, 2, 1])]).unwrap();
    assert!(rep.leftovers_removed.is_empty());
    assert_eq!(
        StateFile::new(path.clone()).read().unwrap().unwrap().pf,
        "sim0"
    );
    s.remove_all().unwrap();
}

#[test]
fn rss_weights_follow_ethtool() {
    assert_eq!(weight_table(&[1, 0, 0, 0], 128).unwrap(), vec![0; 128]);
    let t = weight_table(&[1, 2, 1], 128).unwrap();
    assert_eq!(t.iter().filter(|&&q| q == 0).count(), 32);
    assert_eq!(t.iter().filter(|&&q| q == 1).count(), 64);
    assert_eq!(&t[..33], &[vec![0; 32], vec![1]].concat()[..]);
    assert!(weight_table(&[0, 0], 128).is_err());

    let mut s = Steering::new(SimBackend::standalone("sim0", 2046), None);
    let t = s.set_rss_weights(&[0, 1, 1]).unwrap();
    assert_eq!(s.backend_mut().rss_indir().unwrap(), t);
    assert!(t[..64].iter().all(|&q| q == 1) && t[64..].iter().all(|&q| q == 2));
    // Queue 9 does not exist on the model's 4-ring PF.
    let mut w = vec![0; 10];
    w[9] = 1;
    assert!(s.set_rss_weights(&w).is_err());
}

#[test]
fn real_kernel_answers_in_plain_words() {
    match EthtoolBackend::open("fg-nonexist0") {
        Err(SteeringError::Kernel { errno, msg, .. }) => {
            assert_eq!(errno, libc::ENODEV);
            assert!(msg.contains("no such network interface"), "{msg}");
        }
        other => panic!("expected ENODEV, got {other:?}"),
    }
    assert!(matches!(
        EthtoolBackend::open("bad/name"),
        Err(SteeringError::BadName(..))
    ));
    // Loopback has no flow director: the kernel answers EOPNOTSUPP to the listing.
    let b = EthtoolBackend::open("lo").expect("lo exists");
    let mut s = Steering::new(b, None);
    let err = s.install(&[dns([127, 0, 0, 1])]).unwrap_err();
    match &err {
        SteeringError::Kernel { errno, msg, .. } => {
            assert_eq!(*errno, libc::EOPNOTSUPP);
            assert!(msg.contains("ethtool -K lo ntuple on"), "{msg}");
        }
        other => panic!("expected EOPNOTSUPP, got {other:?}"),
    }
    assert_eq!(
        s.backend_mut().rx_rings().unwrap_err().errno,
        libc::EOPNOTSUPP
    );
}

#[test]
fn errno_words() {
    assert!(explain_errno("eth0", libc::EPERM, "n-tuple rules").contains("CAP_NET_ADMIN"));
    assert!(explain_errno("eth0", libc::ENOSPC, "n-tuple rules").contains("full"));
    assert!(explain_errno("eth0", libc::ENODEV, "x").contains("\"eth0\""));
    assert!(explain_errno("eth0", libc::EOPNOTSUPP, "x").contains("ethtool -K eth0 ntuple on"));
}

#[test]
fn state_is_cleared_after_the_privilege_drop_without_handing_over_the_directory() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: dropping privileges needs root");
        return;
    }
    let path = tmp_state("privdrop");
    let creds = floodgate::privdrop::resolve("nobody", None).expect("user nobody exists");
    let mut s = Steering::new(SimBackend::standalone("sim0", 2046), Some(path.clone()));
    s.install(&[dns([192, 0, 2, 1])]).unwrap();
    let dir = path.parent().unwrap();
    let meta = std::fs::metadata(dir).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o700));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // SAFETY: the child drops privileges, makes syscalls and small allocations (glibc's malloc
    // is fork-safe), and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = if creds.apply(true).is_err() {
            100
        } else {
            match s.remove_all() {
                Ok(1) => 0,
                Ok(_) => 101,
                Err(e) => {
                    eprintln!("{e}");
                    102
                }
            }
        };
        // SAFETY: leave the child without running the parent's handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "remove_all as nobody failed");
    // The directory stayed root's; the file was emptied, not handed over.
    assert_eq!(std::fs::metadata(dir).unwrap().uid(), 0);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.len()), (0, 0));
    // The next (root) start reads "nothing installed", removes the empty file and installs.
    assert!(StateFile::new(path.clone()).read().unwrap().is_none());
    let mut s2 = Steering::new(SimBackend::standalone("sim0", 2046), Some(path.clone()));
    let rep = s2.install(&[dns([192, 0, 2, 1])]).unwrap();
    assert!(rep.leftovers_removed.is_empty());
    s2.remove_all().unwrap();
    assert!(!path.exists());
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}
