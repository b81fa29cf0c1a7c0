//! `floodgate run --config FILE`: the daemon on a real VF through kernel VFIO, or on a VF served
//! over vfio-user (for example the model's `floodgate-sim serve`). `pci = "sim"` is refused here:
//! the built-in model runs under `floodgate demo`.
//!
//! Order of events:
//! 1. load and validate the config (nothing is touched if it is invalid);
//! 2. open the VF through VFIO and bring it up;
//! 3. install the steering rules on the PF (cleaning up rules a crashed run left behind);
//! 4. open the TAP (or, with `[reinject] to = "vf"`, prepare to transmit survivors back out of
//!    the VF: no TAP);
//! 5. drop privileges (keeping CAP_NET_ADMIN so the rules can be removed at exit);
//! 6. run the filter loop until SIGINT/SIGTERM; SIGHUP reloads the rules;
//! 7. drain the rings (for at most `[daemon] drain_timeout_ms`), remove the steering rules,
//!    print the final counters.
//!
//! Signals never reach the data path: SIGINT, SIGTERM and SIGHUP are blocked in every thread
//! (the mask is set before any thread starts and inherited) and taken by one signal thread with
//! `sigtimedwait`, so no blocking call on the polling thread is interrupted. A SIGHUP asks the
//! reload thread to read, parse and compile the config and build the rule set (with one copy
//! per worker); the polling thread only moves the finished set in between two bursts. A second
//! SIGINT/SIGTERM stops at once (no drain). The steering rules are removed however the run ends:
//! normal stop, an error, or a panic (a guard removes them when it is dropped).

use crate::backend::{BackendError, PacketBackend};
use crate::config::{Config, DeviceAddr, DstMac, ReinjectTo, SrcMac, VfReinject};
use crate::daemon::filterloop::{FilterLoop, LoopOptions, TxBack};
use crate::daemon::metrics::{Metrics, MetricsServer};
use crate::daemon::runloop::{
    run_loop, LoopControl, LoopReport, NicMissed, PreparedRules, ReloadOutcome,
};
use crate::filter::RuleSet;
use crate::sink::{CountingSink, PassSink};
use crate::steering::{Steering, SteeringBackend};
use crate::tap::{Tap, TapSink, TapWriter};
use anyhow::{bail, Context, Result};
use floodgate_pmd::IxgbeVf;
use floodgate_vfio::Device;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Installs the SIGINT/SIGTERM (stop) and SIGHUP (reload) handlers on `ctl`'s flags, as
/// signal handlers (for embedders that run [`run_loop`] themselves). The daemon itself takes
/// signals on a signal thread instead ([`SignalThread`]), so that they never interrupt the
/// polling thread.
pub fn install_signal_handlers(ctl: &LoopControl) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, ctl.stop.clone())
            .with_context(|| format!("installing the handler for signal {sig}"))?;
    }
    signal_hook::flag::register(SIGHUP, ctl.reload.clone())
        .context("installing the SIGHUP handler")?;
    Ok(())
}

fn daemon_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set they are given, which is a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// The daemon's signal thread: SIGINT/SIGTERM and SIGHUP are blocked in the calling thread
/// (and so in every thread it starts afterwards) and taken here with `sigtimedwait`. The first
/// SIGINT/SIGTERM sets `stop`, the next one `abort`; a SIGHUP sends a reload request.
pub struct SignalThread {
    /// Set by the first SIGINT/SIGTERM.
    pub stop: Arc<AtomicBool>,
    /// Set by the second SIGINT/SIGTERM.
    pub abort: Arc<AtomicBool>,
    /// Reload requests (one per SIGHUP), for the reload thread.
    requests: Mutex<Option<Receiver<()>>>,
    done: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl SignalThread {
    /// Blocks the daemon's signals in this thread and starts the signal thread. Call before
    /// any other thread is started, so all of them inherit the mask.
    pub fn start() -> Result<SignalThread> {
        let set = daemon_sigset();
        // SAFETY: `set` is a valid signal set; the old mask is not asked for.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc))
                .context("blocking SIGINT/SIGTERM/SIGHUP for the signal thread");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (s2, a2, d2) = (stop.clone(), abort.clone(), done.clone());
        let handle = std::thread::Builder::new()
            .name("floodgate-signals".into())
            .spawn(move || signal_thread(set, &s2, &a2, &d2, &tx))
            .context("starting the signal thread")?;
        Ok(SignalThread {
            stop,
            abort,
            requests: Mutex::new(Some(rx)),
            done,
            handle: Some(handle),
        })
    }

    /// The reload requests (once; `None` afterwards).
    fn take_requests(&self) -> Option<Receiver<()>> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Drop for SignalThread {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn signal_thread(
    set: libc::sigset_t,
    stop: &AtomicBool,
    abort: &AtomicBool,
    done: &AtomicBool,
    reload: &Sender<()>,
) {
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    while !done.load(Ordering::Acquire) {
        // SAFETY: `set` and `timeout` are valid for the call; no siginfo is asked for.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        match sig {
            libc::SIGINT | libc::SIGTERM => {
                let name = if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                if stop.swap(true, Ordering::AcqRel) {
                    abort.store(true, Ordering::Release);
                    log::warn!("{name} again: stopping at once, without draining the rings");
                } else {
                    log::info!(
                        "{name}: stopping (draining the rings); send it again to stop at once"
                    );
                }
            }
            libc::SIGHUP => {
                if reload.send(()).is_err() {
                    log::warn!("SIGHUP: no reload thread (the daemon is stopping)");
                } else {
                    // READY=1 follows once the new rules are in force or rejected.
                    crate::sdnotify::reloading();
                }
            }
            _ => {} // timeout (EAGAIN) or EINTR: look at `done` again
        }
    }
}

/// Where a reload reads the config from: the path, or, when the daemon's (unprivileged) user
/// may not open it, the file descriptor opened at start (before the privilege drop), read
/// again from offset 0. The descriptor only helps while the file at the path is the same file
/// (same inode): a config replaced by a new file (an editor that writes a copy and renames it)
/// must be readable by the daemon's user, or the reload is rejected with that reason.
pub struct ConfigSource {
    path: PathBuf,
    kept: Option<File>,
}

impl ConfigSource {
    /// Opens `path` now (while still privileged) and keeps it open.
    pub fn open(path: &Path) -> ConfigSource {
        let kept = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) => {
                log::warn!(
                    "{}: cannot keep the config open for reloads: {e}",
                    path.display()
                );
                None
            }
        };
        ConfigSource {
            path: path.to_path_buf(),
            kept,
        }
    }

    /// The config text now.
    pub fn read(&self) -> std::result::Result<String, String> {
        let path = self.path.display();
        let e = match std::fs::read_to_string(&self.path) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        let Some(kept) = &self.kept else {
            return Err(format!("{path}: {e}"));
        };
        if e.kind() != std::io::ErrorKind::PermissionDenied {
            return Err(format!("{path}: {e}"));
        }
        use std::os::unix::fs::MetadataExt;
        let same = match (std::fs::metadata(&self.path), kept.metadata()) {
            (Ok(now), Ok(then)) => now.dev() == then.dev() && now.ino() == then.ino(),
            // The directory is not searchable either: the kept descriptor is all there is.
            (Err(m), _) if m.kind() == std::io::ErrorKind::PermissionDenied => true,
            _ => false,
        };
        if !same {
            return Err(format!(
                "{path}: {e}, and it is no longer the file opened at start (replaced by a new \
                 file?): edit it in place, make it readable by the daemon's user, or restart"
            ));
        }
        read_all_at(kept).map_err(|e| format!("{path} (descriptor kept from start): {e}"))
    }
}

/// The whole file from offset 0 with `pread`, whatever the descriptor's position.
fn read_all_at(f: &File) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match f.read_at(&mut chunk, buf.len() as u64) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Called by the reload thread with each new config that parsed, before its rules are built
/// (the AF_XDP run replaces its XDP steering program here); an error rejects the reload.
pub(super) type ReloadHook = Box<dyn FnMut(&Config) -> std::result::Result<(), String> + Send>;

/// Loads the rules for a reload. Only the rules change on SIGHUP: a changed `[reinject]`
/// (running with `running`) is reported and takes effect at the next start.
fn load_rules(src: &ConfigSource, running: ReinjectTo) -> std::result::Result<RuleSet, String> {
    load_rules_with(src, running, None)
}

fn load_rules_with(
    src: &ConfigSource,
    running: ReinjectTo,
    hook: Option<&mut ReloadHook>,
) -> std::result::Result<RuleSet, String> {
    let text = src.read()?;
    let path = src.path.display().to_string();
    // The whole chain: the outcome crosses threads as text and is logged as it is.
    let c =
        Config::from_str_named(&text, &path).map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    if let Some(h) = hook {
        h(&c)?;
    }
    if c.reinject != running {
        log::warn!(
            "{path}: [reinject] changed; survivors keep going where they went ({}) until \
             the daemon is restarted (only the rules are reloaded)",
            match running {
                ReinjectTo::Tap => "the TAP",
                ReinjectTo::Vf(_) => "out of the VF",
            }
        );
    }
    Ok(c.filter.ruleset())
}

/// The reload thread: for each request, reads and compiles the config and builds the rule set
/// and its per-worker copies, then sends the outcome to the polling thread. Also frees the rule
/// sets the polling thread retires. Ends when the requests stop (signal thread gone) or the
/// polling thread stops listening.
fn reload_thread(
    src: ConfigSource,
    running: ReinjectTo,
    workers: usize,
    requests: Receiver<()>,
    out: Sender<ReloadOutcome>,
    retired: Receiver<RuleSet>,
    mut hook: Option<ReloadHook>,
) {
    loop {
        while retired.try_recv().is_ok() {}
        match requests.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => {
                let t = std::time::Instant::now();
                let outcome = load_rules_with(&src, running, hook.as_mut()).map(|rules| {
                    let mut p = PreparedRules::new(rules, workers);
                    p.took = t.elapsed();
                    p
                });
                if out.send(outcome).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                // The polling thread is gone (its end of `retired` is dropped with it).
                if let Err(mpsc::TryRecvError::Disconnected) = retired.try_recv() {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Removes the steering rules when dropped: at the end of a run, on an error return and while
/// a panic unwinds, so the flood is never left steered into a VF nobody polls.
struct SteeringGuard<B: SteeringBackend>(Option<Steering<B>>);

impl<B: SteeringBackend> Drop for SteeringGuard<B> {
    fn drop(&mut self) {
        if let Some(s) = self.0.as_mut() {
            match s.remove_all() {
                Ok(n) => log::info!("removed {n} steering rule(s) from {}", s.backend().pf()),
                Err(e) => log::error!("removing steering rules: {e}"),
            }
        }
    }
}

/// Runs the daemon as configured by the file at `path`.
pub fn run(path: &Path) -> Result<LoopReport> {
    let cfg = Config::load(path)?;
    // Before any other thread starts (they inherit the blocked signals).
    let signals = SignalThread::start()?;
    // Opened while still privileged, for reloads after the privilege drop.
    let source = ConfigSource::open(path);
    let d = Daemon {
        path,
        signals: &signals,
        source: Mutex::new(Some(source)),
    };
    match &cfg.device.device {
        DeviceAddr::Pci(addr) => {
            let pci = addr.to_string();
            let dev = floodgate_vfio::kernel::VfioDevice::open(&pci)
                .with_context(|| format!("opening VF {pci}"))?;
            run_device(&cfg, &d, dev, &pci)
        }
        DeviceAddr::VfioUser(sock) => {
            let dev = floodgate_vfio::user::VfioUserDevice::connect(sock).with_context(|| {
                format!("connecting to the vfio-user server at {}", sock.display())
            })?;
            run_device(&cfg, &d, dev, &format!("vfio-user:{}", sock.display()))
        }
        DeviceAddr::AfXdp(x) => super::run_xdp::run_af_xdp(&cfg, &d, x),
        DeviceAddr::Sim => bail!(
            "{}: device \"sim\" is the built-in model: run `floodgate demo` for it \
             (`run` drives a VF given by its PCI address, or a vfio-user socket)",
            path.display()
        ),
    }
}

/// What a run needs besides its config: the config path, the signal thread and the config
/// source for reloads (taken by the reload thread).
pub(super) struct Daemon<'a> {
    pub(super) path: &'a Path,
    pub(super) signals: &'a SignalThread,
    pub(super) source: Mutex<Option<ConfigSource>>,
}

fn run_device<D: Device>(cfg: &Config, d: &Daemon<'_>, dev: D, name: &str) -> Result<LoopReport> {
    let path = d.path;
    let vf =
        IxgbeVf::open(dev, pmd_config(cfg)).with_context(|| format!("bringing up VF {name}"))?;
    log::info!(
        "VF {name} up: MAC {}, {} queue pair(s)",
        floodgate_pmd::fmt_mac(vf.mac()),
        vf.num_queues()
    );

    let steering = if cfg.steering.is_empty() {
        None
    } else {
        let pf = cfg.device.pf.as_deref().with_context(|| {
            format!(
                "{}: steering rules need [device] pf = \"<netdev>\"",
                path.display()
            )
        })?;
        let backend = crate::steering::EthtoolBackend::open(pf)?;
        let mut s = Steering::new(backend, Some(cfg.daemon.state_file.clone()));
        let rep = s.install(&cfg.steering)?;
        if !rep.leftovers_removed.is_empty() {
            log::warn!(
                "removed {} steering rule(s) left by a previous run at locations {:?}",
                rep.leftovers_removed.len(),
                rep.leftovers_removed
            );
        }
        for i in &rep.installed {
            log::info!("steering: {} at location {}", i.rule.action, i.location);
        }
        Some(s)
    };

    // From here on the rules are removed however this function is left.
    let guard = SteeringGuard(steering);
    match cfg.reinject {
        ReinjectTo::Tap => serve_tap(cfg, d, vf, guard.0.as_ref()),
        ReinjectTo::Vf(r) => serve_vf(cfg, d, vf, r, guard.0.as_ref()),
    }
}

/// Resolves `[reinject] to = "vf"` for a VF with MAC `vf_mac`; `pf_mac` gives the PF's MAC
/// for `dst_mac = "pf"` (the PF netdev's on a real box, the model's in the demo).
pub fn vf_tx(
    r: &VfReinject,
    vf_mac: [u8; 6],
    pf_mac: impl FnOnce() -> Result<[u8; 6]>,
) -> Result<TxBack> {
    let dst = match r.dst_mac {
        None => None,
        Some(DstMac::Mac(m)) => Some(m),
        Some(DstMac::Pf) => Some(pf_mac()?),
    };
    Ok(TxBack::new(
        vf_mac,
        r.tx_queue as usize,
        r.src_mac == SrcMac::Vf,
        dst,
    ))
}

fn drop_privileges<B: SteeringBackend>(cfg: &Config, steering: Option<&Steering<B>>) -> Result<()> {
    drop_privileges_keeping(cfg, steering.is_some())
}

/// Drops to `[daemon] user`/`group` if set, keeping CAP_NET_ADMIN when `keep_net_admin`.
pub(super) fn drop_privileges_keeping(cfg: &Config, keep_net_admin: bool) -> Result<()> {
    if let Some(user) = &cfg.daemon.user {
        let creds = crate::privdrop::resolve(user, cfg.daemon.group.as_deref())?;
        // The state directory stays root's: at exit the unprivileged process empties the state
        // file through the descriptor kept since it was written (see `StateFile`).
        // Keep CAP_NET_ADMIN only when steering rules must be removed at exit.
        creds.apply(keep_net_admin)?;
        log::info!(
            "running as {} (uid {}, gid {})",
            creds.user,
            creds.uid,
            creds.gid
        );
    }
    Ok(())
}

/// Survivors back out of the packet backend they came in on: no TAP, the filter loop transmits
/// them itself.
fn serve_vf<P: PacketBackend, B: SteeringBackend>(
    cfg: &Config,
    d: &Daemon<'_>,
    backend: P,
    r: VfReinject,
    steering: Option<&Steering<B>>,
) -> Result<LoopReport> {
    let own_mac = match backend.mac() {
        Some(m) => m,
        None if r.src_mac == SrcMac::Vf => bail!(
            "[reinject] src_mac = \"vf\" rewrites survivors' source to the backend's own MAC, \
             and the {} backend has none",
            backend.kind()
        ),
        // Not used: the source MAC is kept.
        None => [0; 6],
    };
    let tx = vf_tx(&r, own_mac, || {
        let pf = cfg
            .device
            .pf
            .as_deref()
            .context("[reinject] dst_mac = \"pf\" needs [device] pf")?;
        if_mac(pf)
            .with_context(|| format!("reading {pf}'s MAC address from /sys/class/net/{pf}/address"))
    })?;
    log::info!(
        "reinjecting survivors out of the {} backend: TX queue {}, source MAC {}, destination \
         MAC {}",
        backend.kind(),
        tx.queue,
        tx.src_mac
            .map_or("kept".to_string(), floodgate_pmd::fmt_mac),
        tx.dst_mac
            .map_or("kept".to_string(), floodgate_pmd::fmt_mac),
    );
    drop_privileges(cfg, steering)?;
    let rules = cfg.filter.ruleset();
    let burst = cfg.device.burst as usize;
    let workers = (cfg.daemon.workers as usize).max(1);
    let sinks = (0..workers).map(|_| CountingSink::default()).collect();
    let opts = LoopOptions {
        tx: Some(tx),
        ..LoopOptions::new(burst, sinks)
    };
    let mut fl = FilterLoop::new(backend, rules, opts).context("starting the filter loop")?;
    serve_daemon(&mut fl, cfg, d)
}

/// Survivors into the kernel through the TAP.
fn serve_tap<P: PacketBackend, B: SteeringBackend>(
    cfg: &Config,
    d: &Daemon<'_>,
    backend: P,
    steering: Option<&Steering<B>>,
) -> Result<LoopReport> {
    {
        // Survivors still carry the PF's MAC as destination: give the TAP that MAC so the
        // kernel takes them as addressed to it.
        let sinks = tap_sinks(cfg, cfg.device.pf.as_deref(), false)?;
        let burst = cfg.device.burst as usize;

        drop_privileges(cfg, steering)?;
        let rules = cfg.filter.ruleset();
        let mut fl = FilterLoop::new(backend, rules, LoopOptions::new(burst, sinks))
            .context("starting the filter loop")?;
        serve_daemon(&mut fl, cfg, d)
    }
}

/// Opens the TAP of `[tap]`, gives it the MAC of interface `mac_of` (the address survivors
/// are sent to, so the kernel takes them as its own), brings it up and makes one sink per
/// judging thread (one writer and io_uring each, all on the same TAP). With
/// `completing_checksums`, partial UDP/TCP checksums are filled in before the write.
pub(super) fn tap_sinks(
    cfg: &Config,
    mac_of: Option<&str>,
    completing_checksums: bool,
) -> Result<Vec<TapSink>> {
    let tap = Tap::open(&cfg.tap.name)?;
    if let Some(name) = mac_of {
        match if_mac(name) {
            Some(mac) => tap.set_mac(mac)?,
            None => log::warn!(
                "could not read {name}'s MAC address; reinjected frames keep it as \
                 destination, so give TAP {} the same MAC by hand",
                cfg.tap.name
            ),
        }
    }
    tap.set_up()?;
    loose_rp_filter(&cfg.tap.name);
    let burst = cfg.device.burst as usize;
    let workers = (cfg.daemon.workers as usize).max(1);
    let fd = tap.into_fd();
    let mut sinks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let w = TapWriter::new(
            fd.try_clone().context("duplicating the TAP descriptor")?,
            burst,
        );
        sinks.push(if completing_checksums {
            TapSink::completing_checksums(w)
        } else {
            TapSink::new(w)
        });
    }
    drop(fd);
    log::info!(
        "reinjecting into TAP {} ({} writer(s){})",
        cfg.tap.name,
        sinks.len(),
        if completing_checksums {
            ", partial checksums completed"
        } else {
            ""
        }
    );
    Ok(sinks)
}

/// The PMD configuration of a daemon config.
pub fn pmd_config(cfg: &Config) -> floodgate_pmd::Config {
    floodgate_pmd::Config {
        rx_ring_size: cfg.device.rx_ring as usize,
        tx_ring_size: cfg.device.tx_ring as usize,
        pool_buffers: Some(cfg.device.pool_size),
        headroom: cfg.device.headroom as usize,
        max_queues: Some(cfg.device.queues as usize),
        mtu: cfg.device.mtu,
        xcast: cfg.device.xcast,
        ..Default::default()
    }
}

/// Runs the loop with signal handlers, reload (on the polling thread) and metrics as
/// configured; prints the final counters. For embedders; the daemon uses a signal thread and a
/// reload thread instead.
pub fn serve<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    cfg: &Config,
    path: &Path,
) -> Result<LoopReport> {
    let mut ctl = LoopControl::new();
    install_signal_handlers(&ctl)?;
    let src = ConfigSource {
        path: path.to_path_buf(),
        kept: None,
    };
    let running = cfg.reinject;
    ctl.reloader = Some(Box::new(move || load_rules(&src, running)));
    serve_with(fl, cfg, ctl)
}

/// The daemon's loop: signals from the signal thread, rules built on a reload thread.
fn serve_daemon<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    cfg: &Config,
    d: &Daemon<'_>,
) -> Result<LoopReport> {
    let nic_missed = cfg.device.pf.clone().map(pf_missed);
    serve_daemon_with(fl, cfg, d, nic_missed, None)
}

/// [`serve_daemon`] with the backend's own missed-frames reader and a reload hook.
pub(super) fn serve_daemon_with<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    cfg: &Config,
    d: &Daemon<'_>,
    nic_missed: Option<NicMissed>,
    hook: Option<ReloadHook>,
) -> Result<LoopReport> {
    let mut ctl = LoopControl::new();
    ctl.stop = d.signals.stop.clone();
    ctl.abort = d.signals.abort.clone();
    let source = d.source.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let (Some(src), Some(requests)) = (source, d.signals.take_requests()) {
        let (out_tx, out_rx) = mpsc::channel();
        let (ret_tx, ret_rx) = mpsc::channel();
        let (running, workers) = (cfg.reinject, fl.workers());
        // Detached: it ends once the loop's channels are dropped.
        std::thread::Builder::new()
            .name("floodgate-reload".into())
            .spawn(move || reload_thread(src, running, workers, requests, out_tx, ret_rx, hook))
            .context("starting the reload thread")?;
        ctl.new_rules = Some(out_rx);
        ctl.retired = Some(ret_tx);
    }
    ctl.nic_missed = nic_missed;
    serve_with(fl, cfg, ctl)
}

/// The PF netdev's count of frames the port could not take in (`rx_missed_errors`: its packet
/// buffer overflowed, facts §5.4 MPC), the NIC-side loss the daemon can read on a real box.
fn pf_missed(pf: String) -> NicMissed {
    let path = format!("/sys/class/net/{pf}/statistics/rx_missed_errors");
    let mut warned = false;
    Box::new(move || match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().parse().unwrap_or(0),
        Err(e) => {
            if !warned {
                log::warn!("{path}: {e}; NIC missed frames shown as 0");
                warned = true;
            }
            0
        }
    })
}

fn serve_with<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    cfg: &Config,
    mut ctl: LoopControl,
) -> Result<LoopReport> {
    ctl.progress = true;
    ctl.interval = std::time::Duration::from_millis(cfg.stats.interval_ms.max(100));
    ctl.idle = crate::daemon::runloop::IdlePolicy::nap_us(cfg.daemon.idle_sleep_us);
    ctl.drain_timeout = Duration::from_millis(u64::from(cfg.daemon.drain_timeout_ms));
    let metrics = Arc::new(Metrics::default());
    let _server = match cfg.stats.prometheus {
        Some(addr) => Some(MetricsServer::start(addr, metrics.clone())?),
        None => None,
    };
    ctl.metrics = Some(metrics);
    ctl.watchdog = crate::sdnotify::WatchdogFeeder::from_env();
    // The VF is up, the steering rules are installed and survivors have somewhere to go: tell
    // systemd (Type=notify) the service is ready.
    crate::sdnotify::ready();
    let outcome = run_loop(fl, &mut ctl);
    // Ends the reload thread (its outcome channel closes).
    drop(ctl);
    match outcome {
        Ok(rep) => {
            print_final_line(fl.tx_back().is_some(), &rep, None);
            Ok(rep)
        }
        Err(f) => {
            // The final line still tells what was counted before the device failed.
            print_final_line(fl.tx_back().is_some(), &f.report, Some(&f.error));
            Err(anyhow::Error::new(*f).context("filter loop"))
        }
    }
}

/// The one line the daemon prints at exit: every counter, and whether the invariant holds.
/// `failure`: the device error that ended the loop, if one did.
fn print_final_line(vf_tx: bool, rep: &LoopReport, failure: Option<&BackendError>) {
    let c = rep.counters;
    let out = if vf_tx {
        format!(
            "vf tx {}, refused {}; looped back {}{}",
            c.vf_tx,
            c.vf_tx_dropped,
            c.looped,
            if rep.vf_tx_unsent > 0 {
                format!("; {} not reported sent at exit", rep.vf_tx_unsent)
            } else {
                String::new()
            }
        )
    } else {
        format!("tap {}, refused {}", c.tap, c.tap_dropped)
    };
    let missed = rep.nic_missed.map_or("n/a".to_string(), |m| m.to_string());
    println!(
        "floodgate: rx {} | dropped {} | passed {} ({out}) | errors {} | left in rings {} | \
         nic missed {missed} | reloads {} ({} rejected) | PF resets {} | device timeouts {} | \
         invariant {} {}",
        c.rx_packets,
        c.dropped,
        c.passed,
        c.errors,
        c.left,
        rep.reloads,
        rep.reload_errors,
        rep.pf_resets,
        rep.transport_timeouts,
        if c.invariant_holds() {
            "holds"
        } else {
            "VIOLATED"
        },
        crate::stats::invariant_scope(rep.nic_missed),
    );
    if let Some(e) = failure {
        println!("floodgate: stopped by a device failure: {e}");
    }
}

/// Sets loose reverse-path filtering (`rp_filter = 2`) on the TAP: reinjected packets come from
/// sources the kernel routes through the PF, so strict filtering (1) would drop them all.
/// Failures (no IPv4 conf directory, read-only /proc) are logged, not fatal.
fn loose_rp_filter(tap: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{tap}/rp_filter");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "1" => match std::fs::write(&path, "2") {
            Ok(()) => log::info!("{tap}: rp_filter 1 -> 2 (loose), so reinjected packets are kept"),
            Err(e) => log::warn!(
                "{tap}: strict rp_filter drops reinjected packets and it could not be set to 2: \
                 {e}; run `sysctl -w net.ipv4.conf.{tap}.rp_filter=2`"
            ),
        },
        Ok(_) => {}
        Err(e) => log::debug!("{path}: {e}"),
    }
}

/// Reads an interface's MAC address with `SIOCGIFHWADDR` (in the calling thread's network
/// namespace, which `/sys/class/net` may not show).
fn if_mac(ifname: &str) -> Option<[u8; 6]> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: plain socket(2); the result is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a valid socket and a valid ifreq; the kernel writes the address into it.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut ifr) };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    if r != 0 {
        return None;
    }
    // SAFETY: after SIOCGIFHWADDR the union holds a sockaddr.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Some(mac)
}

#[cfg(test)]
mod tests {
    #[test]
    fn steering_rules_are_removed_when_the_run_fails_or_panics() {
        use crate::steering::{Action, Flow, SimBackend, Steering, SteeringRule};
        let nic = floodgate_sim::Nic::new(floodgate_sim::NicConfig {
            capture_egress: false,
            ..Default::default()
        });
        let on_port = || nic.pf().switch(|s| s.ethtool_ntuple_all()).1.len();
        for panics in [false, true] {
            let mut s = Steering::new(SimBackend::model("sim0", nic.pf()), None);
            s.install(&[
                SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 }).dst_port(53),
            ])
            .unwrap();
            assert_eq!(on_port(), 1);
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> anyhow::Result<()> {
                    let _guard = super::SteeringGuard(Some(s));
                    if panics {
                        panic!("the polling thread panicked");
                    }
                    anyhow::bail!("device gone")
                }));
            assert_eq!(r.is_err(), panics);
            assert_eq!(on_port(), 0, "rules left on the port (panic: {panics})");
        }
    }

    #[test]
    fn if_mac_reads_the_kernels_address_and_refuses_nonsense() {
        // Loopback exists everywhere and has the all-zero address.
        assert_eq!(super::if_mac("lo"), Some([0; 6]));
        assert_eq!(super::if_mac("no-such-if-xyz"), None);
    }

    #[test]
    fn vf_reinject_settings_resolve_to_rewrites_and_the_loop_guard() {
        use crate::config::{DstMac, SrcMac, VfReinject};
        let vf = [2, 0xf1, 0, 0, 0, 1];
        let pf = [2, 0, 0, 0, 0, 0xfe];
        let r = VfReinject {
            tx_queue: 1,
            src_mac: SrcMac::Vf,
            dst_mac: Some(DstMac::Pf),
        };
        let t = super::vf_tx(&r, vf, || Ok(pf)).unwrap();
        assert_eq!(
            (t.queue, t.src_mac, t.dst_mac, t.loop_guard),
            (1, Some(vf), Some(pf), Some(vf))
        );
        let r = VfReinject {
            tx_queue: 0,
            src_mac: SrcMac::Keep,
            dst_mac: None,
        };
        let t = super::vf_tx(&r, vf, || anyhow::bail!("not asked")).unwrap();
        assert_eq!((t.src_mac, t.dst_mac, t.loop_guard), (None, None, None));
        // The PF's MAC is only read when asked for, and a failure to read it is reported.
        let r = VfReinject {
            tx_queue: 0,
            src_mac: SrcMac::Vf,
            dst_mac: Some(DstMac::Pf),
        };
        let e = super::vf_tx(&r, vf, || anyhow::bail!("no sysfs")).unwrap_err();
        assert!(e.to_string().contains("no sysfs"), "{e}");
    }
}
