//! XDP steering, the flow director's twin for `backend = "af_xdp"`: the `[[steering]]` rules
//! become an XDP program (generated, no compiler) that redirects the steered flows into the
//! AF_XDP sockets of an XSKMAP and passes every other frame to the kernel.
//!
//! Lifecycle ([`XdpSteering`]):
//!
//! 1. **Clean-up of a previous run.** The state file (`xdp-<ifname>.json` beside
//!    `[daemon] state_file`, see [`xdp_state_path`]) records the interface, the program's and
//!    the link's ids and the pid. If it exists, its program is looked for on the interface
//!    (rtnetlink): gone (the normal case: a BPF link dies with the last descriptor, so with
//!    the process, also after `kill -9`), it is only logged; still attached while the pid is
//!    alive, another floodgate runs there and the start is refused; still attached with the
//!    pid dead (the link was kept alive elsewhere, or an older run attached without a link),
//!    its link is detached by id, or else the program is detached through rtnetlink, only if
//!    it is still that program. A program floodgate did not record is never touched.
//! 2. **Install.** The program is generated from the rules, loaded (the verifier's log is in
//!    the error) and attached through a BPF link in the configured mode (`auto`: native, else
//!    generic); the mode obtained is read back from the interface. Then the state file is
//!    written.
//! 3. **Reload** ([`XdpSteering::replace`]): the new program is loaded first, then swapped in
//!    on the same link with `BPF_LINK_UPDATE` (`BPF_F_REPLACE`: only if the link still runs
//!    the old one). The swap is atomic: each frame runs either the old or the new program, the
//!    interface is never without one, so nothing is lost or steered by a half-updated rule
//!    set. A program the verifier refuses leaves the old one running.
//! 4. **Stop** ([`XdpSteering::remove`], or drop): the link is detached and the state file
//!    removed.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use floodgate_xdp::bpf::{BpfError, Link, Map, Program, XdpAttachMode};
use floodgate_xdp::netlink::{self, AttachedMode, NetlinkError};
use floodgate_xdp::prog::{self, GenOptions, RuleError, XdpRule};
use serde::{Deserialize, Serialize};

use super::{StateFile, SteeringError};
use crate::config::XdpMode;

/// The program's name as the kernel shows it (`ip link`, `bpftool prog`).
pub const PROG_NAME: &str = "floodgate_steer";

const VERSION: u32 = 1;

/// Errors of the XDP steering.
#[derive(Debug, thiserror::Error)]
pub enum XdpSteeringError {
    /// No such interface.
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    /// A rule the generator refused.
    #[error("{0}")]
    Rule(#[from] RuleError),
    /// A `bpf(2)` call failed (the verifier's log is in a load error).
    #[error("{what} on {ifname}: {source}")]
    Bpf {
        /// What was being done.
        what: &'static str,
        /// The interface.
        ifname: String,
        /// The error.
        #[source]
        source: BpfError,
    },
    /// An rtnetlink call failed.
    #[error("{what} on {ifname}: {source}")]
    Netlink {
        /// What was being done.
        what: &'static str,
        /// The interface.
        ifname: String,
        /// The error.
        #[source]
        source: NetlinkError,
    },
    /// Another XDP program is attached to the interface.
    #[error("{ifname} already runs an XDP program (id {prog_id}, {mode} mode) that this floodgate did not attach; only one program can be attached: find its owner with `bpftool net show dev {ifname}`, or remove a stale one with `ip link set dev {ifname} xdp off` (`xdpgeneric off` for generic mode)")]
    Busy {
        /// The interface.
        ifname: String,
        /// The program attached.
        prog_id: u32,
        /// Its mode.
        mode: AttachedMode,
    },
    /// The state file records a live floodgate whose program is still attached.
    #[error("another floodgate (pid {pid}) runs XDP steering on {ifname} (program id {prog_id}, recorded in {path}); stop it first")]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
        /// The interface.
        ifname: String,
        /// Its program.
        prog_id: u32,
        /// The state file.
        path: PathBuf,
    },
    /// `xdp_mode = "native"` on a driver without native XDP.
    #[error("{ifname}: native XDP refused ({source}): the driver has no XDP support or refuses this configuration (MTU, queues); use xdp_mode = \"auto\" or \"generic\"")]
    NoNative {
        /// The interface.
        ifname: String,
        /// The kernel's error.
        #[source]
        source: BpfError,
    },
    /// The state file could not be read or written.
    #[error(transparent)]
    State(#[from] SteeringError),
}

/// What the state file records about an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpState {
    /// Format version (1).
    pub version: u32,
    /// Interface name at attach time.
    pub ifname: String,
    /// Interface index at attach time.
    pub ifindex: u32,
    /// Process that attached.
    pub pid: u32,
    /// The program's kernel id.
    pub prog_id: u32,
    /// The BPF link's kernel id (0: attached without a link).
    pub link_id: u32,
    /// Mode obtained (`native`, `generic`, ...).
    pub mode: String,
}

/// The XDP state file for `ifname`: `xdp-<ifname>.json` in the directory of `state_file`
/// (`[daemon] state_file`, the ethtool steering's), so that two floodgates on two interfaces
/// never share one.
pub fn xdp_state_path(state_file: &Path, ifname: &str) -> PathBuf {
    let dir = state_file.parent().unwrap_or(Path::new("."));
    dir.join(format!("xdp-{ifname}.json"))
}

/// Where and how to install: the interface, the XSKMAP the sockets are registered in, optional
/// per-verdict counters ([`prog::counters_map`]), the attach mode and the state file.
#[derive(Debug)]
pub struct XdpSetup<'a> {
    /// Interface name.
    pub ifname: &'a str,
    /// The XSKMAP (key: RX queue, value: socket), filled by the data path.
    pub xskmap: &'a Map,
    /// Per-verdict counters (passed, steered), if wanted.
    pub counters: Option<&'a Map>,
    /// `[device] xdp_mode`.
    pub mode: XdpMode,
    /// The state file (see [`xdp_state_path`]); `None`: no crash clean-up record.
    pub state_path: Option<PathBuf>,
}

impl<'a> XdpSetup<'a> {
    /// The setup `cfg` asks for (`[device] ifname`, `xdp_mode`, the state file beside
    /// `[daemon] state_file`), or `None` if `cfg` is not `backend = "af_xdp"`.
    pub fn for_config(
        cfg: &'a crate::config::Config,
        xskmap: &'a Map,
        counters: Option<&'a Map>,
    ) -> Option<XdpSetup<'a>> {
        let x = cfg.device.af_xdp()?;
        Some(XdpSetup {
            ifname: &x.ifname,
            xskmap,
            counters,
            mode: x.xdp_mode,
            state_path: Some(xdp_state_path(&cfg.daemon.state_file, &x.ifname)),
        })
    }
}

/// What the clean-up of a previous run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleCleanup {
    /// No state file: nothing to do.
    None,
    /// A state file whose program is no longer attached (its link died with its process).
    Gone(XdpState),
    /// A state file whose program was still attached, and was removed.
    Removed(XdpState),
}

/// The XDP steering program attached to an interface. Dropping it detaches the program and
/// removes the state file (errors are logged); [`remove`](Self::remove) does the same and
/// reports them.
#[derive(Debug)]
pub struct XdpSteering {
    ifname: String,
    ifindex: u32,
    mode: AttachedMode,
    prog: Program,
    prog_id: u32,
    link: Option<Link>,
    link_id: u32,
    xskmap: OwnedFd,
    counters: Option<OwnedFd>,
    rules: Vec<XdpRule>,
    state: Option<StateFile>,
    cleanup: StaleCleanup,
}

fn bpf_err<'a>(
    what: &'static str,
    ifname: &'a str,
) -> impl FnOnce(BpfError) -> XdpSteeringError + 'a {
    move |source| XdpSteeringError::Bpf {
        what,
        ifname: ifname.to_string(),
        source,
    }
}

fn nl_err<'a>(
    what: &'static str,
    ifname: &'a str,
) -> impl FnOnce(NetlinkError) -> XdpSteeringError + 'a {
    move |source| XdpSteeringError::Netlink {
        what,
        ifname: ifname.to_string(),
        source,
    }
}

fn dup(fd: impl AsFd, ifname: &str) -> Result<OwnedFd, XdpSteeringError> {
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|e| XdpSteeringError::Bpf {
            what: "duplicating a map descriptor",
            ifname: ifname.to_string(),
            source: BpfError::Syscall {
                cmd: "F_DUPFD_CLOEXEC",
                source: e,
            },
        })
}

/// Whether process `pid` exists (`kill(pid, 0)`: success or `EPERM`).
fn pid_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether an rtnetlink error says the interface is gone.
fn no_such_device(e: &NetlinkError) -> bool {
    matches!(e, NetlinkError::Refused { source, .. } if source.raw_os_error() == Some(libc::ENODEV))
}

fn load(
    ifname: &str,
    rules: &[XdpRule],
    xskmap: &OwnedFd,
    counters: Option<&OwnedFd>,
) -> Result<Program, XdpSteeringError> {
    let opts = GenOptions {
        counters: counters.map(|c| c.as_fd()),
        ..GenOptions::default()
    };
    let insns = prog::generate(rules, xskmap.as_fd(), opts)?;
    Program::load_xdp(PROG_NAME, &insns)
        .map_err(bpf_err("loading the XDP steering program", ifname))
}

/// Attaches `prog` through a BPF link in `mode`; `auto` tries native, then generic.
fn attach(
    ifname: &str,
    ifindex: u32,
    prog: &Program,
    mode: XdpMode,
) -> Result<Link, XdpSteeringError> {
    let busy = |e: &BpfError| matches!(e, BpfError::Syscall { source, .. } if source.raw_os_error() == Some(libc::EBUSY));
    let busy_err = || -> XdpSteeringError {
        match netlink::xdp_attached(ifindex) {
            Ok(Some(a)) => XdpSteeringError::Busy {
                ifname: ifname.to_string(),
                prog_id: a.prog_id,
                mode: a.mode,
            },
            _ => XdpSteeringError::Busy {
                ifname: ifname.to_string(),
                prog_id: 0,
                mode: AttachedMode::Multi,
            },
        }
    };
    let generic = |prog: &Program| {
        prog.attach_xdp(ifindex, XdpAttachMode::Generic)
            .map_err(|e| {
                if busy(&e) {
                    busy_err()
                } else {
                    bpf_err("attaching the XDP program (generic mode)", ifname)(e)
                }
            })
    };
    match mode {
        XdpMode::Generic => generic(prog),
        XdpMode::Native | XdpMode::Auto => match prog.attach_xdp(ifindex, XdpAttachMode::Native) {
            Ok(link) => Ok(link),
            Err(e) if busy(&e) => Err(busy_err()),
            Err(e) if mode == XdpMode::Native => Err(XdpSteeringError::NoNative {
                ifname: ifname.to_string(),
                source: e,
            }),
            Err(e) => {
                log::warn!(
                    "{ifname}: native XDP refused ({e}); attaching in generic (skb) mode, which is slower"
                );
                generic(prog)
            }
        },
    }
}

/// Removes what a previous run recorded in `state`, if it is still attached and its process
/// is dead (see the module documentation).
fn clean_stale(state: &mut StateFile) -> Result<StaleCleanup, XdpSteeringError> {
    let Some(text) = state.read_text()? else {
        return Ok(StaleCleanup::None);
    };
    let path = state.path().to_path_buf();
    let st: XdpState = serde_json::from_str(&text).map_err(|e| {
        XdpSteeringError::State(SteeringError::State {
            path: path.clone(),
            msg: format!(
                "not a floodgate XDP state ({e}); if no floodgate is running, check the interface with `ip link` and delete the file"
            ),
        })
    })?;
    if st.version != VERSION {
        return Err(XdpSteeringError::State(SteeringError::State {
            path,
            msg: format!("version {} is not the supported {VERSION}", st.version),
        }));
    }
    let ifname = st.ifname.clone();
    let attached = match netlink::xdp_attached(st.ifindex) {
        Ok(a) => a,
        Err(e) if no_such_device(&e) => None,
        Err(e) => return Err(nl_err("reading the XDP state", &ifname)(e)),
    };
    // Ours: the recorded program, or whatever the recorded link runs on that interface (the
    // program id in the record lags if a reload could not rewrite the file).
    let link = match (attached, st.link_id) {
        (Some(_), id) if id != 0 => {
            Link::from_id(id).map_err(bpf_err("finding the stale link", &ifname))?
        }
        _ => None,
    };
    let link_info = link
        .as_ref()
        .map(|l| l.info())
        .transpose()
        .map_err(bpf_err("reading the stale link", &ifname))?;
    let via_link = match (attached, &link_info) {
        (Some(a), Some(i)) => i.xdp_ifindex == Some(st.ifindex) && i.prog_id == a.prog_id,
        _ => false,
    };
    let ours = attached.filter(|a| via_link || (st.prog_id != 0 && a.prog_id == st.prog_id));
    let Some(att) = ours else {
        log::info!(
            "{}: the XDP program of a previous run (pid {}, program id {}) is gone already",
            ifname,
            st.pid,
            st.prog_id
        );
        state.remove()?;
        return Ok(StaleCleanup::Gone(st));
    };
    if st.pid != std::process::id() && pid_alive(st.pid) {
        return Err(XdpSteeringError::AlreadyRunning {
            pid: st.pid,
            ifname,
            prog_id: att.prog_id,
            path,
        });
    }
    match link {
        Some(link) if via_link => link
            .detach()
            .map_err(bpf_err("detaching the stale link", &ifname))?,
        _ => {
            if let Some(prog) = Program::from_id(att.prog_id)
                .map_err(bpf_err("finding the stale program", &ifname))?
            {
                netlink::detach_legacy(st.ifindex, att.mode, prog.as_fd().as_raw_fd())
                    .map_err(nl_err("detaching the stale XDP program", &ifname))?;
            }
        }
    }
    log::warn!(
        "{}: removed the XDP program (id {}, {} mode) left attached by a previous run (pid {})",
        ifname,
        att.prog_id,
        att.mode,
        st.pid
    );
    state.remove()?;
    Ok(StaleCleanup::Removed(st))
}

impl XdpSteering {
    /// Cleans up after a previous run, generates and loads the program for `rules`, attaches
    /// it to the interface and records the attachment (see the module documentation).
    pub fn install(
        setup: &XdpSetup<'_>,
        rules: &[XdpRule],
    ) -> Result<XdpSteering, XdpSteeringError> {
        let ifname = setup.ifname;
        let ifindex = floodgate_xdp::ifindex(ifname)
            .ok_or_else(|| XdpSteeringError::NoInterface(ifname.to_string()))?;
        let mut state = setup.state_path.clone().map(StateFile::new);
        let cleanup = match state.as_mut() {
            Some(s) => clean_stale(s)?,
            None => StaleCleanup::None,
        };
        let xskmap = dup(setup.xskmap, ifname)?;
        let counters = setup.counters.map(|c| dup(c, ifname)).transpose()?;
        let prog = load(ifname, rules, &xskmap, counters.as_ref())?;
        let prog_id = prog
            .info()
            .map_err(bpf_err("reading the program's id", ifname))?
            .id;
        let link = attach(ifname, ifindex, &prog, setup.mode)?;
        let link_id = link
            .info()
            .map_err(bpf_err("reading the link's id", ifname))?
            .id;
        let mode = match netlink::xdp_attached(ifindex) {
            Ok(Some(a)) => a.mode,
            _ if setup.mode == XdpMode::Generic => AttachedMode::Generic,
            _ => AttachedMode::Native,
        };
        let mut steering = XdpSteering {
            ifname: ifname.to_string(),
            ifindex,
            mode,
            prog,
            prog_id,
            link: Some(link),
            link_id,
            xskmap,
            counters,
            rules: rules.to_vec(),
            state,
            cleanup,
        };
        // On error the steering is dropped, which detaches the link again.
        steering.record()?;
        log::info!(
            "{ifname}: XDP steering attached in {mode} mode (program id {prog_id}, link id {link_id}, {} rule(s), {} instructions)",
            rules.len(),
            steering.prog.len()
        );
        Ok(steering)
    }

    fn record(&mut self) -> Result<(), XdpSteeringError> {
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        let st = XdpState {
            version: VERSION,
            ifname: self.ifname.clone(),
            ifindex: self.ifindex,
            pid: std::process::id(),
            prog_id: self.prog_id,
            link_id: self.link_id,
            mode: self.mode.to_string(),
        };
        let text = serde_json::to_string(&st).map_err(|e| SteeringError::State {
            path: state.path().to_path_buf(),
            msg: e.to_string(),
        })?;
        state.write_text(&text)?;
        Ok(())
    }

    /// Replaces the rules: generates and loads the new program, then swaps it in atomically on
    /// the same link (`BPF_LINK_UPDATE` with `BPF_F_REPLACE`) and records its id (a failure
    /// to record is logged only). On any error the old program keeps running. Loading needs
    /// `CAP_BPF` and `CAP_NET_ADMIN`, so a daemon that drops privileges must keep them.
    pub fn replace(&mut self, rules: &[XdpRule]) -> Result<(), XdpSteeringError> {
        let new = load(&self.ifname, rules, &self.xskmap, self.counters.as_ref())?;
        let new_id = new
            .info()
            .map_err(bpf_err("reading the program's id", &self.ifname))?
            .id;
        let Some(link) = self.link.as_ref() else {
            return Err(bpf_err("replacing the XDP program", &self.ifname)(
                BpfError::Syscall {
                    cmd: "BPF_LINK_UPDATE",
                    source: std::io::Error::from_raw_os_error(libc::ENOLINK),
                },
            ));
        };
        link.update(&new, Some(&self.prog))
            .map_err(bpf_err("replacing the XDP program", &self.ifname))?;
        let old = std::mem::replace(&mut self.prog, new);
        drop(old);
        self.prog_id = new_id;
        self.rules = rules.to_vec();
        // The new program runs; a record that cannot be rewritten (after a privilege drop)
        // keeps the link's id, which is what the clean-up goes by.
        if let Err(e) = self.record() {
            log::warn!("{}: recording the replaced XDP program: {e}", self.ifname);
        }
        log::info!(
            "{}: XDP steering replaced (program id {new_id}, {} rule(s))",
            self.ifname,
            rules.len()
        );
        Ok(())
    }

    /// Detaches the program and removes the state file.
    pub fn remove(mut self) -> Result<(), XdpSteeringError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), XdpSteeringError> {
        if let Some(link) = self.link.take() {
            link.detach()
                .map_err(bpf_err("detaching the XDP program", &self.ifname))?;
            log::info!("{}: XDP steering detached", self.ifname);
        }
        if let Some(mut s) = self.state.take() {
            s.remove()?;
        }
        Ok(())
    }

    /// The interface.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Its index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode obtained (`ip link` shows `xdp` for native, `xdpgeneric` for generic).
    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    /// The running program's kernel id.
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// The link's kernel id (the same across [`replace`](Self::replace)).
    pub fn link_id(&self) -> u32 {
        self.link_id
    }

    /// The running program (for `BPF_PROG_TEST_RUN`).
    pub fn program(&self) -> &Program {
        &self.prog
    }

    /// The rules the running program was generated from.
    pub fn rules(&self) -> &[XdpRule] {
        &self.rules
    }

    /// What the clean-up of a previous run found at install.
    pub fn cleanup(&self) -> &StaleCleanup {
        &self.cleanup
    }
}

impl Drop for XdpSteering {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            log::error!("removing the XDP steering from {}: {e}", self.ifname);
        }
    }
}
