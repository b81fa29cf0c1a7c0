//! `floodgate run` with `[device] backend = "af_xdp"`: the same daemon on any Linux interface.
//!
//! Order of events (next to the VF's in [`super::run`]):
//! 1. open one AF_XDP socket per queue `0..[device] queues` of `ifname`, each over its own
//!    packet pool (zero copy where the driver has it, else copy mode: logged, and exported as
//!    `floodgate_backend_info{kind="af_xdp",mode=...}`);
//! 2. register the sockets in an XSKMAP and attach the XDP program generated from the
//!    `[[steering]]` rules (steered flows into the sockets, the rest to the kernel);
//! 3. open the TAP with the interface's MAC (survivors are addressed to it) and complete the
//!    partial checksums virtual interfaces deliver before writing them there;
//! 4. drop privileges, run the filter loop until SIGINT/SIGTERM; SIGHUP reloads the filter
//!    rules and replaces the XDP program (a program that does not load rejects the reload);
//! 5. at the end the program is detached (also on an error or a panic: the steering's drop
//!    detaches it; after `kill -9` the kernel does, since the BPF link dies with the process).
//!
//! The kernel's drops for want of a buffer or ring space are the "nic missed" figure.

use super::filterloop::{FilterLoop, LoopOptions};
use super::run::{drop_privileges_keeping, serve_daemon_with, tap_sinks, Daemon, ReloadHook};
use super::runloop::{LoopReport, NicMissed};
use crate::backend::af_xdp::{XskBackend, XskConfig};
use crate::backend::PacketBackend;
use crate::config::{AfXdpDevice, Config, XdpMode, ZeroCopy};
use crate::steering::xdp::{XdpSetup, XdpSteering};
use anyhow::{Context, Result};
use floodgate_xdp::{BindMode, Map};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// AF_XDP ring sizes must be powers of two: `rx_ring`/`tx_ring` are rounded up.
fn ring_size(v: u16, key: &str) -> u32 {
    let n = u32::from(v.max(64)).next_power_of_two();
    if n != u32::from(v) {
        log::info!("[device] {key} = {v}: AF_XDP rings are powers of two, using {n}");
    }
    n
}

/// The backend's settings from the config.
pub fn xsk_config(cfg: &Config, x: &AfXdpDevice) -> XskConfig {
    let mut c = XskConfig::new(&x.ifname, u32::from(cfg.device.queues.max(1)));
    c.bind = match x.zero_copy {
        ZeroCopy::Auto => BindMode::Auto,
        ZeroCopy::Require => BindMode::ZeroCopy,
        ZeroCopy::Off => BindMode::Copy,
    };
    c.buffers = cfg.device.xdp_frames_per_queue();
    c.chunk_size = cfg.device.xdp_chunk_size();
    c.headroom = usize::from(cfg.device.headroom);
    c.rx_ring = ring_size(cfg.device.rx_ring, "rx_ring");
    c.tx_ring = ring_size(cfg.device.tx_ring, "tx_ring");
    c
}

/// Runs the daemon on the AF_XDP backend (see the module docs).
pub(super) fn run_af_xdp(cfg: &Config, d: &Daemon<'_>, x: &AfXdpDevice) -> Result<LoopReport> {
    let xc = xsk_config(cfg, x);
    let backend = XskBackend::open(&xc)
        .with_context(|| format!("opening the AF_XDP sockets on {}", x.ifname))?;
    log::info!(
        "AF_XDP backend: {} queue(s) on {} in {} mode",
        backend.rx_queues(),
        x.ifname,
        backend.mode()
    );
    let xskmap = Map::xskmap("floodgate_xsks", xc.queues)
        .with_context(|| format!("creating the XSKMAP for {}", x.ifname))?;
    backend.register(&xskmap)?;
    let setup = XdpSetup::for_config(cfg, &xskmap, None)
        .context("the AF_XDP run needs an AF_XDP device")?;
    let steering = XdpSteering::install(&setup, &cfg.xdp_steering)
        .with_context(|| format!("attaching the XDP steering program to {}", x.ifname))?;
    if x.xdp_mode == XdpMode::Auto {
        log::info!("{}: XDP program in {} mode", x.ifname, steering.mode());
    }
    // Detached when the run ends, however it ends (the last handle is dropped here or by the
    // reload thread; a panic unwinds through both).
    let steering = Arc::new(Mutex::new(Some(steering)));
    let hook: ReloadHook = {
        let steering = steering.clone();
        let ifname = x.ifname.clone();
        Box::new(move |c: &Config| {
            if c.device.af_xdp().map(|n| &n.ifname) != Some(&ifname) {
                log::warn!(
                    "reload: [device] changed; the AF_XDP sockets stay on {ifname} until the \
                     daemon is restarted (the rules and the steering are reloaded)"
                );
            }
            let mut g = steering.lock().unwrap_or_else(|e| e.into_inner());
            match g.as_mut() {
                Some(s) if s.rules() != c.xdp_steering.as_slice() => s
                    .replace(&c.xdp_steering)
                    .map_err(|e| format!("replacing the XDP steering program: {e}")),
                _ => Ok(()),
            }
        })
    };

    // Survivors are addressed to the interface: the TAP takes its MAC so the kernel accepts
    // them as its own. On veth, frames can arrive with partial checksums: completed before the
    // TAP write.
    let sinks = tap_sinks(cfg, Some(&x.ifname), true)?;
    let burst = cfg.device.burst as usize;
    // CAP_NET_ADMIN stays (as for the ethtool steering). Loading a replacement program also
    // needs CAP_BPF, which a drop to `[daemon] user` gives up: such a run then rejects a reload
    // that changes `[[steering]]` (the kernel's EPERM is in the log) and keeps the old rules and
    // program; reloads of the filter rules alone work.
    drop_privileges_keeping(cfg, true)?;

    let missed = backend.missed_counter();
    let nic_missed: NicMissed = Box::new(move || missed.load(Ordering::Relaxed));
    let rules = cfg.filter.ruleset();
    let mut fl = FilterLoop::new(backend, rules, LoopOptions::new(burst, sinks))
        .context("starting the filter loop")?;
    let out = serve_daemon_with(&mut fl, cfg, d, Some(nic_missed), Some(hook));
    if let Some(s) = steering.lock().unwrap_or_else(|e| e.into_inner()).take() {
        if let Err(e) = s.remove() {
            log::error!("removing the XDP steering from {}: {e}", x.ifname);
        }
    }
    out
}
