//! XDP steering lifecycle on a veth pair inside a network namespace: install (and what
//! `ip link` shows), the program's verdicts for crafted IPv4/IPv6 frames (`BPF_PROG_TEST_RUN`,
//! told apart by the program's counters), atomic replacement under traffic, removal, and the
//! clean-up after a floodgate killed with SIGKILL (link-based attachment: gone by itself;
//! legacy attachment: removed at the next start). Needs root and `ip`; otherwise each test
//! prints one `skipped:` line.

use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use floodgate::config::{AddrMatch, XdpFlow, XdpMode, XdpRule};
use floodgate::steering::xdp::{StaleCleanup, XdpState, PROG_NAME};
use floodgate::steering::{XdpSetup, XdpSteering, XdpSteeringError};
use floodgate_xdp::bpf::{Map, Program};
use floodgate_xdp::netlink::{self, AttachedMode};
use floodgate_xdp::prog;

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the ip command (iproute2) is missing".into());
    }
    if let Err(e) = Map::xskmap("fg_probe", 1) {
        return Some(format!("bpf(2) is not usable here: {e}"));
    }
    None
}

macro_rules! need_root {
    () => {
        if let Some(why) = skip_reason() {
            println!("skipped: {why}");
            return;
        }
    };
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace with a veth pair `fgs0` (where XDP is attached) and `fgs1` (where frames are sent
/// from), both up; deleted on drop.
struct Ns {
    name: String,
    dir: PathBuf,
}

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("fgxs-{}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let dir = std::env::temp_dir().join(format!("fgxs-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ns = Ns { name, dir };
        ip(&[
            "-n", &ns.name, "link", "add", "name", "fgs0", "type", "veth", "peer", "name", "fgs1",
        ]);
        for i in ["fgs0", "fgs1", "lo"] {
            ip(&["-n", &ns.name, "link", "set", i, "up"]);
        }
        ns
    }

    fn enter(&self) {
        enter_ns(&self.name);
    }

    fn link_a(&self) -> String {
        ip(&["-n", &self.name, "link", "show", "dev", "fgs0"])
    }

    /// The state file the steering records into (inside a private 0700 directory).
    fn state(&self) -> PathBuf {
        self.dir.join("xdp-fgs0.json")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn enter_ns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    // SAFETY: setns on a valid namespace fd changes only this thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Whether `ip link` shows an XDP program: `None`, or `(generic, prog id)`.
fn xdp_shown(link: &str) -> Option<(bool, u32)> {
    let generic = link.contains(" xdpgeneric");
    if !generic && !link.contains(" xdp ") && !link.contains(" xdp/id:") {
        return None;
    }
    let id = link
        .split_once("prog/xdp id ")
        .or_else(|| link.split_once("xdp/id:"))
        .or_else(|| link.split_once("xdpgeneric/id:"))
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0);
    Some((generic, id))
}

fn wait_no_xdp(ns: &Ns) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_shown(&ns.link_a()).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(xdp_shown(&ns.link_a()), None, "{}", ns.link_a());
}

// ---- frames ---------------------------------------------------------------------------------

fn eth(ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0xa, 0x02, 0, 0, 0, 0, 0xb];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn l4(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        h.extend_from_slice(&[0, 12, 0, 0]);
        h.extend_from_slice(b"dns?");
    }
    h
}

fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let body = l4(proto, sport, dport);
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&body);
    f
}

fn v6(proto: u8, src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let body = l4(proto, sport, dport);
    let mut f = eth(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(body.len() as u16).to_be_bytes());
    f.extend_from_slice(&[proto, 64]);
    f.extend_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&body);
    f
}

/// Runs `frame` through the attached program and says whether it was steered (the steered
/// counter moved) or passed (the passed counter moved); exactly one must move.
fn steered(st: &XdpSteering, counters: &Map, frame: &[u8]) -> bool {
    let before = prog::read_counters(counters).unwrap();
    let run = st.program().test_run(frame).unwrap();
    // An empty XSKMAP: a match falls back to XDP_PASS, like a non-match.
    assert_eq!(run.retval, 2, "XDP_PASS");
    let after = prog::read_counters(counters).unwrap();
    let (passed, steer) = (after[0] - before[0], after[1] - before[1]);
    assert_eq!(
        passed + steer,
        1,
        "exactly one bucket: {before:?} -> {after:?}"
    );
    steer == 1
}

fn rules_v4_v6() -> Vec<XdpRule> {
    let mut dns4 = XdpRule::new(XdpFlow::Udp4).dst_port(53);
    dns4.name = Some("dns4".into());
    let mut dns6 = XdpRule::new(XdpFlow::Udp6)
        .src(AddrMatch::v6_prefix("2001:db8::".parse().unwrap(), 32))
        .dst_port(53);
    dns6.name = Some("dns6".into());
    vec![dns4, dns6]
}

fn setup<'a>(ns: &Ns, xsk: &'a Map, counters: &'a Map, mode: XdpMode) -> XdpSetup<'a> {
    XdpSetup {
        ifname: "fgs0",
        xskmap: xsk,
        counters: Some(counters),
        mode,
        state_path: Some(ns.state()),
    }
}

fn read_state(path: &Path) -> XdpState {
    serde_json::from_str(&std::fs::read_to_string(path).expect("state file")).expect("state")
}

#[test]
fn install_verdicts_replace_remove() {
    need_root!();
    let ns = Ns::new("i");
    ns.enter();
    let xsk = Map::xskmap("fg_xsks", 4).unwrap();
    let counters = prog::counters_map("fg_cnt").unwrap();
    let st = XdpSteering::install(&setup(&ns, &xsk, &counters, XdpMode::Auto), &rules_v4_v6())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.cleanup(), &StaleCleanup::None);
    // veth has native XDP: auto gets it, and `ip link` shows it with our program's id.
    assert_eq!(st.mode(), AttachedMode::Native);
    assert_eq!(
        xdp_shown(&ns.link_a()),
        Some((false, st.prog_id())),
        "{}",
        ns.link_a()
    );
    let info = Program::from_id(st.prog_id())
        .unwrap()
        .unwrap()
        .info()
        .unwrap();
    assert_eq!(info.name, PROG_NAME);
    let rec = read_state(&ns.state());
    assert_eq!(
        (
            rec.ifname.as_str(),
            rec.pid,
            rec.prog_id,
            rec.link_id,
            rec.mode.as_str()
        ),
        (
            "fgs0",
            std::process::id(),
            st.prog_id(),
            st.link_id(),
            "native"
        )
    );

    let c = &counters;
    let dns4 = v4(17, [198, 51, 100, 1], [192, 0, 2, 1], 4000, 53);
    let other4 = v4(17, [198, 51, 100, 1], [192, 0, 2, 1], 4000, 54);
    let tcp4 = v4(6, [198, 51, 100, 1], [192, 0, 2, 1], 4000, 53);
    let dns6 = v6(17, "2001:db8:5::1", "2001:db8::53", 4000, 53);
    let dns6_elsewhere = v6(17, "2001:db9::1", "2001:db8::53", 4000, 53);
    let tcp6 = v6(6, "2001:db8:5::1", "2001:db8::53", 4000, 53);
    let port54_6 = v6(17, "2001:db8:5::1", "2001:db8::53", 4000, 54);
    assert!(steered(&st, c, &dns4));
    assert!(!steered(&st, c, &other4));
    assert!(!steered(&st, c, &tcp4));
    assert!(steered(&st, c, &dns6), "IPv6 steering");
    assert!(!steered(&st, c, &dns6_elsewhere));
    assert!(!steered(&st, c, &tcp6));
    assert!(!steered(&st, c, &port54_6));
    assert!(!steered(&st, c, &dns4[..30]), "truncated frames pass");

    // Replace: same link, new program, recorded.
    let mut st = st;
    let (old_prog, link) = (st.prog_id(), st.link_id());
    let mut six = XdpRule::new(XdpFlow::Udp6).dst_port(54);
    six.name = Some("six".into());
    st.replace(&[six]).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(st.prog_id(), old_prog);
    assert_eq!(st.link_id(), link);
    assert_eq!(xdp_shown(&ns.link_a()), Some((false, st.prog_id())));
    assert_eq!(read_state(&ns.state()).prog_id, st.prog_id());
    assert!(!steered(&st, c, &dns4));
    assert!(!steered(&st, c, &dns6));
    assert!(steered(&st, c, &port54_6));
    assert!(
        Program::from_id(old_prog).unwrap().is_none(),
        "the old program is freed"
    );

    // A program the generator refuses leaves the running one in place.
    let bad = XdpRule::new(XdpFlow::Ip4 { proto: None }).dst_port(1);
    assert!(matches!(st.replace(&[bad]), Err(XdpSteeringError::Rule(_))));
    assert_eq!(xdp_shown(&ns.link_a()), Some((false, st.prog_id())));

    st.remove().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(xdp_shown(&ns.link_a()), None, "{}", ns.link_a());
    assert!(!ns.state().exists(), "state file removed");

    // Dropping removes it too.
    let st =
        XdpSteering::install(&setup(&ns, &xsk, &counters, XdpMode::Auto), &rules_v4_v6()).unwrap();
    assert!(xdp_shown(&ns.link_a()).is_some());
    drop(st);
    assert_eq!(xdp_shown(&ns.link_a()), None);
    assert!(!ns.state().exists());
}

#[test]
fn generic_mode_and_missing_interface() {
    need_root!();
    let ns = Ns::new("g");
    ns.enter();
    let xsk = Map::xskmap("fg_xsks", 1).unwrap();
    let counters = prog::counters_map("fg_cnt").unwrap();
    // The setup a config asks for: its interface, mode and state file.
    let text = format!(
        "[device]\nbackend = \"af_xdp\"\nifname = \"fgs0\"\nxdp_mode = \"generic\"\n\
         [[steering]]\nflow = \"udp6\"\ndst_port = 53\n\
         [daemon]\nstate_file = \"{}\"\n",
        ns.dir.join("steering.json").display()
    );
    let cfg = floodgate::config::Config::from_str_named(&text, "g.toml").unwrap();
    let s = XdpSetup::for_config(&cfg, &xsk, Some(&counters)).expect("af_xdp config");
    assert_eq!(s.state_path.as_deref(), Some(ns.state().as_path()));
    let st = XdpSteering::install(&s, &cfg.xdp_steering).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.mode(), AttachedMode::Generic);
    assert!(steered(
        &st,
        &counters,
        &v6(17, "2001:db8::1", "2001:db8::2", 9, 53)
    ));
    assert!(!steered(
        &st,
        &counters,
        &v4(17, [10, 0, 0, 1], [10, 0, 0, 2], 9, 53)
    ));
    assert_eq!(
        xdp_shown(&ns.link_a()),
        Some((true, st.prog_id())),
        "{}",
        ns.link_a()
    );
    assert_eq!(read_state(&ns.state()).mode, "generic");
    drop(st);
    assert_eq!(xdp_shown(&ns.link_a()), None);

    let mut s = setup(&ns, &xsk, &counters, XdpMode::Auto);
    s.ifname = "nosuch0";
    let e = XdpSteering::install(&s, &[]).unwrap_err();
    assert_eq!(e.to_string(), "interface \"nosuch0\" does not exist");
}

/// Replacing the program while frames of a steered flow arrive: every frame is counted as
/// steered (by the old or the new program), none passes, none meets no program.
#[test]
fn replace_under_traffic_misses_no_frame() {
    need_root!();
    let ns = Ns::new("r");
    ns.enter();
    let xsk = Map::xskmap("fg_xsks", 4).unwrap();
    let counters = prog::counters_map("fg_cnt").unwrap();
    let mut st =
        XdpSteering::install(&setup(&ns, &xsk, &counters, XdpMode::Auto), &rules_v4_v6()).unwrap();
    let name = ns.name.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sender = std::thread::spawn(move || {
        enter_ns(&name);
        let frame = v4(17, [198, 51, 100, 1], [192, 0, 2, 1], 4000, 53);
        let mut sent = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            sent += send_frames("fgs1", &frame, 64);
        }
        sent
    });
    // Wait until frames flow, then replace 50 times, alternating between two rule sets that
    // both steer the flow.
    let deadline = Instant::now() + Duration::from_secs(5);
    while prog::read_counters(&counters).unwrap()[1] == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    const REPLACEMENTS: usize = 50;
    let start = prog::read_counters(&counters).unwrap()[1];
    for i in 0..REPLACEMENTS {
        let mut rules = rules_v4_v6();
        if i % 2 == 0 {
            rules.reverse();
        }
        st.replace(&rules).unwrap();
    }
    let during = prog::read_counters(&counters).unwrap()[1];
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    // veth delivers asynchronously (NAPI): wait for the counters to settle.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = [0, 0];
    while Instant::now() < deadline {
        last = prog::read_counters(&counters).unwrap();
        if last[1] >= sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(during > start, "no traffic during the replacements");
    assert_eq!(
        last[1], sent,
        "steered {last:?} of {sent} sent across {REPLACEMENTS} replacements"
    );
    st.remove().unwrap();
}

/// Sends `n` copies of `frame` out of `ifname` with an AF_PACKET socket, pausing briefly when
/// the veth queue is full (`ENOBUFS`) so that nothing is dropped before XDP sees it.
fn send_frames(ifname: &str, frame: &[u8], n: u64) -> u64 {
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
    // SAFETY: sockaddr_ll is plain data.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = floodgate_xdp::ifindex(ifname).unwrap() as i32;
    addr.sll_halen = 6;
    let mut sent = 0;
    while sent < n {
        // SAFETY: `frame` and `addr` are valid for the lengths given.
        let r = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "sendto: {e}");
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        sent += 1;
        if sent % 64 == 0 {
            // Keep veth's queue from overflowing (an overflow is a drop the test would see).
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    sent
}

#[test]
fn a_foreign_program_is_never_touched() {
    need_root!();
    let ns = Ns::new("f");
    ns.enter();
    let xsk = Map::xskmap("fg_xsks", 1).unwrap();
    let counters = prog::counters_map("fg_cnt").unwrap();
    let ifindex = floodgate_xdp::ifindex("fgs0").unwrap();
    let insns = prog::generate(&[], xsk.as_fd_borrowed(), Default::default()).unwrap();
    let foreign = Program::load_xdp("foreign", &insns).unwrap();
    netlink::attach_legacy(ifindex, foreign.as_raw(), false).unwrap();
    let foreign_id = foreign.info().unwrap().id;
    drop(foreign);
    let e = XdpSteering::install(&setup(&ns, &xsk, &counters, XdpMode::Auto), &rules_v4_v6())
        .unwrap_err();
    assert!(
        matches!(e, XdpSteeringError::Busy { prog_id, mode: AttachedMode::Native, .. } if prog_id == foreign_id),
        "{e}"
    );
    assert!(
        e.to_string().contains("ip link set dev fgs0 xdp off"),
        "{e}"
    );
    assert_eq!(xdp_shown(&ns.link_a()), Some((false, foreign_id)));
    assert!(!ns.state().exists(), "nothing recorded");
}

// ---- crash and restart ----------------------------------------------------------------------

/// Kills the child if the test fails before it does.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the crash helper in `kind` mode (`link` or `legacy`) and waits until it attached.
fn spawn_helper(ns: &Ns, kind: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "crash_helper", "--nocapture"])
        .env("FGXS_KIND", kind)
        .env("FGXS_NS", &ns.name)
        .env("FGXS_STATE", ns.state())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let child = Child(child);
    let ready = std::io::BufReader::new(out)
        .lines()
        .any(|l| l.map(|l| l.contains("attached")).unwrap_or(false));
    assert!(ready, "the helper did not attach");
    child
}

fn kill9(mut child: Child) -> u32 {
    let pid = child.0.id();
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    pid
}

#[test]
fn kill_9_with_a_link_leaves_nothing_and_the_restart_cleans_the_record() {
    need_root!();
    let ns = Ns::new("k");
    ns.enter();
    let xsk = Map::xskmap("fg_xsks", 1).unwrap();
    let counters = prog::counters_map("fg_cnt").unwrap();
    let child = spawn_helper(&ns, "link");
    let rec = read_state(&ns.state());
    assert_eq!(rec.pid, child.0.id());
    assert_eq!(xdp_shown(&ns.link_a()), Some((false, rec.prog_id)));

    // While it lives, a second floodgate is refused and leaves it alone.
    let e = XdpSteering::install(&setup(&ns, &xsk, &counters, XdpMode::Auto), &rules_v4_v6())
        .unwrap_err();
    assert!(
        matches!(e, XdpSteeringError::AlreadyRunning { pid, .. } if pid == rec.pid),
        "{e}"
    );
    assert_eq!(xdp_shown(&ns.link_a()), Some((false, rec.prog_id)));

    // kill -9: on this kernel the link dies with the process, so does the attachment.
    let pid = kill9(child);
    wait_no_xdp(&ns);
    assert_eq!(read_state(&ns.state()).pid, pid, "the record outlives it");

    let st = XdpSteering::install(&setup(&ns, &xsk, &counters, XdpMode::Auto), &rules_v4_v6())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(st.cleanup(), StaleCleanup::Gone(s) if s.pid == pid));
    assert_eq!(read_state(&ns.state()).pid, std::process::id());
    assert_eq!(xdp_shown(&ns.link_a()), Some((false, st.prog_id())));
    st.remove().unwrap();
    assert_eq!(xdp_shown(&ns.link_a()), None);
}

#[test]
fn kill_9_with_a_legacy_attachment_is_removed_at_restart() {
    need_root!();
    let ns = Ns::new("l");
    ns.enter();
    let xsk = Map::xskmap("fg_xsks", 1).unwrap();
    let counters = prog::counters_map("fg_cnt").unwrap();
    let child = spawn_helper(&ns, "legacy");
    let rec = read_state(&ns.state());
    assert_eq!(rec.link_id, 0);
    let pid = kill9(child);
    // Without a link the program stays after the process is gone.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        xdp_shown(&ns.link_a()),
        Some((false, rec.prog_id)),
        "{}",
        ns.link_a()
    );

    let st = XdpSteering::install(&setup(&ns, &xsk, &counters, XdpMode::Auto), &rules_v4_v6())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(st.cleanup(), StaleCleanup::Removed(s) if s.pid == pid && s.prog_id == rec.prog_id),
        "{:?}",
        st.cleanup()
    );
    assert_eq!(xdp_shown(&ns.link_a()), Some((false, st.prog_id())));
    assert!(
        Program::from_id(rec.prog_id).unwrap().is_none(),
        "the stale program is freed"
    );
    st.remove().unwrap();
    assert_eq!(xdp_shown(&ns.link_a()), None);
}

/// The child of the crash tests: attaches (through `XdpSteering`, or the legacy way with a
/// hand-written record), says "attached" and waits to be killed.
#[test]
#[ignore = "started by the kill_9 tests"]
fn crash_helper() {
    let (Ok(kind), Ok(ns), Ok(state)) = (
        std::env::var("FGXS_KIND"),
        std::env::var("FGXS_NS"),
        std::env::var("FGXS_STATE"),
    ) else {
        println!("skipped: only runs as the kill_9 tests' child");
        return;
    };
    enter_ns(&ns);
    let xsk = Map::xskmap("fg_xsks", 1).unwrap();
    let _keep = if kind == "link" {
        let s = XdpSetup {
            ifname: "fgs0",
            xskmap: &xsk,
            counters: None,
            mode: XdpMode::Auto,
            state_path: Some(state.into()),
        };
        Some(XdpSteering::install(&s, &rules_v4_v6()).unwrap())
    } else {
        let ifindex = floodgate_xdp::ifindex("fgs0").unwrap();
        let insns =
            prog::generate(&rules_v4_v6(), xsk.as_fd_borrowed(), Default::default()).unwrap();
        let p = Program::load_xdp(PROG_NAME, &insns).unwrap();
        netlink::attach_legacy(ifindex, p.as_raw(), false).unwrap();
        let rec = XdpState {
            version: 1,
            ifname: "fgs0".into(),
            ifindex,
            pid: std::process::id(),
            prog_id: p.info().unwrap().id,
            link_id: 0,
            mode: "native".into(),
        };
        let path = PathBuf::from(state);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string(&rec).unwrap()).unwrap();
        None
    };
    println!("attached");
    std::thread::sleep(Duration::from_secs(60));
}

/// Borrowed descriptors of the crate's objects, for the calls that take raw fds.
trait Fds {
    fn as_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_>;
    fn as_raw(&self) -> i32 {
        self.as_fd_borrowed().as_raw_fd()
    }
}

impl<T: std::os::fd::AsFd> Fds for T {
    fn as_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}
