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
//! 7. drain the rings, remove the steering rules, print the final counters.

use crate::config::{Config, DeviceAddr, DstMac, ReinjectTo, SrcMac, VfReinject};
use crate::daemon::filterloop::{CountingSink, FilterLoop, PassSink, VfTx};
use crate::daemon::metrics::{Metrics, MetricsServer};
use crate::daemon::runloop::{run_loop, LoopControl, LoopReport};
use crate::steering::{Steering, SteeringBackend};
use crate::tap::{Reinject, Tap, TapWriter};
use anyhow::{bail, Context, Result};
use floodgate_pmd::{IxgbeVf, Packet, MAX_BATCH};
use floodgate_vfio::Device;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Passed packets go to the TAP, one io_uring submission per burst. The slices point into the
/// packets' DMA buffers: the kernel's copy in the TAP write is the only copy.
pub struct TapSink {
    writer: TapWriter,
}

impl TapSink {
    /// Wraps a TAP writer.
    pub fn new(writer: TapWriter) -> TapSink {
        TapSink { writer }
    }
}

impl PassSink for TapSink {
    fn submit(&mut self, packets: &[Packet]) -> usize {
        let mut slices: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        let mut written = 0usize;
        for chunk in packets.chunks(MAX_BATCH) {
            for (s, p) in slices.iter_mut().zip(chunk) {
                *s = p.data();
            }
            let o = self.writer.write_burst(&slices[..chunk.len()]);
            written += o.written as usize;
        }
        written
    }
}

/// Installs the SIGINT/SIGTERM (stop) and SIGHUP (reload) handlers on `ctl`'s flags.
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

/// Reloads the rules from `path`. Only the rules change on SIGHUP: a changed `[reinject]`
/// (running with `running`) is reported and takes effect at the next start.
fn reloader(path: PathBuf, running: ReinjectTo) -> crate::daemon::runloop::Reloader {
    Box::new(move || {
        Config::load(&path)
            .map(|c| {
                if c.reinject != running {
                    log::warn!(
                        "{}: [reinject] changed; survivors keep going where they went ({}) until \
                         the daemon is restarted (only the rules are reloaded)",
                        path.display(),
                        match running {
                            ReinjectTo::Tap => "the TAP",
                            ReinjectTo::Vf(_) => "out of the VF",
                        }
                    );
                }
                c.filter.ruleset()
            })
            .map_err(|e| e.to_string())
    })
}

/// Runs the daemon as configured by the file at `path`.
pub fn run(path: &Path) -> Result<LoopReport> {
    let cfg = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    match &cfg.device.device {
        DeviceAddr::Pci(addr) => {
            let pci = addr.to_string();
            let dev = floodgate_vfio::kernel::VfioDevice::open(&pci)
                .with_context(|| format!("opening VF {pci}"))?;
            run_device(&cfg, path, dev, &pci)
        }
        DeviceAddr::VfioUser(sock) => {
            let dev = floodgate_vfio::user::VfioUserDevice::connect(sock).with_context(|| {
                format!("connecting to the vfio-user server at {}", sock.display())
            })?;
            run_device(&cfg, path, dev, &format!("vfio-user:{}", sock.display()))
        }
        DeviceAddr::Sim => bail!(
            "{}: device \"sim\" is the built-in model: run `floodgate demo` for it \
             (`run` drives a VF given by its PCI address, or a vfio-user socket)",
            path.display()
        ),
    }
}

fn run_device<D: Device>(cfg: &Config, path: &Path, dev: D, name: &str) -> Result<LoopReport> {
    let vf =
        IxgbeVf::open(dev, pmd_config(cfg)).with_context(|| format!("bringing up VF {name}"))?;
    log::info!(
        "VF {name} up: MAC {}, {} queue pair(s)",
        floodgate_pmd::fmt_mac(vf.mac()),
        vf.num_queues()
    );

    let mut steering = if cfg.steering.is_empty() {
        None
    } else {
        let pf = cfg.device.pf.as_deref().with_context(|| {
            format!(
                "{}: steering rules need [device] pf = \"<netdev>\"",
                path.display()
            )
        })?;
        let backend =
            crate::steering::EthtoolBackend::open(pf).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut s = Steering::new(backend, Some(cfg.daemon.state_file.clone()));
        let rep = s
            .install(&cfg.steering)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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

    let result = match cfg.reinject {
        ReinjectTo::Tap => serve_tap(cfg, path, vf, steering.as_ref()),
        ReinjectTo::Vf(r) => serve_vf(cfg, path, vf, r, steering.as_ref()),
    };

    if let Some(s) = steering.as_mut() {
        match s.remove_all() {
            Ok(n) => log::info!("removed {n} steering rule(s) from {}", s.backend().pf()),
            Err(e) => log::error!("removing steering rules: {e}"),
        }
    }
    result
}

/// Resolves `[reinject] to = "vf"` for a VF with MAC `vf_mac`; `pf_mac` gives the PF's MAC
/// for `dst_mac = "pf"` (the PF netdev's on a real box, the model's in the demo).
pub fn vf_tx(
    r: &VfReinject,
    vf_mac: [u8; 6],
    pf_mac: impl FnOnce() -> Result<[u8; 6]>,
) -> Result<VfTx> {
    let dst = match r.dst_mac {
        None => None,
        Some(DstMac::Mac(m)) => Some(m),
        Some(DstMac::Pf) => Some(pf_mac()?),
    };
    Ok(VfTx::new(
        vf_mac,
        r.tx_queue as usize,
        r.src_mac == SrcMac::Vf,
        dst,
    ))
}

fn drop_privileges<B: SteeringBackend>(cfg: &Config, steering: Option<&Steering<B>>) -> Result<()> {
    if let Some(user) = &cfg.daemon.user {
        let creds = crate::privdrop::resolve(user, cfg.daemon.group.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The state directory stays root's: at exit the unprivileged process empties the state
        // file through the descriptor kept since it was written (see `StateFile`).
        // Keep CAP_NET_ADMIN only when steering rules must be removed at exit.
        creds
            .apply(steering.is_some())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        log::info!(
            "running as {} (uid {}, gid {})",
            creds.user,
            creds.uid,
            creds.gid
        );
    }
    Ok(())
}

/// Survivors back out of the VF: no TAP, the filter loop transmits them itself.
fn serve_vf<D: Device, B: SteeringBackend>(
    cfg: &Config,
    path: &Path,
    vf: IxgbeVf<D>,
    r: VfReinject,
    steering: Option<&Steering<B>>,
) -> Result<LoopReport> {
    let tx = vf_tx(&r, vf.mac(), || {
        let pf = cfg
            .device
            .pf
            .as_deref()
            .context("[reinject] dst_mac = \"pf\" needs [device] pf")?;
        pf_mac(pf)
            .with_context(|| format!("reading {pf}'s MAC address from /sys/class/net/{pf}/address"))
    })?;
    log::info!(
        "reinjecting survivors out of the VF: TX queue {}, source MAC {}, destination MAC {}",
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
    let mut fl =
        FilterLoop::start(vf, rules, sinks, burst, Some(tx)).context("starting the filter loop")?;
    serve(&mut fl, cfg, path)
}

/// Survivors into the kernel through the TAP.
fn serve_tap<D: Device, B: SteeringBackend>(
    cfg: &Config,
    path: &Path,
    vf: IxgbeVf<D>,
    steering: Option<&Steering<B>>,
) -> Result<LoopReport> {
    {
        let tap = Tap::open(&cfg.tap.name).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Survivors still carry the PF's MAC as destination: give the TAP that MAC so the
        // kernel takes them as addressed to it.
        if let Some(pf) = cfg.device.pf.as_deref() {
            match pf_mac(pf) {
                Some(mac) => tap.set_mac(mac).map_err(|e| anyhow::anyhow!("{e}"))?,
                None => log::warn!(
                    "could not read {pf}'s MAC address; reinjected frames keep it as \
                     destination, so give TAP {} the same MAC by hand",
                    cfg.tap.name
                ),
            }
        }
        tap.set_up().map_err(|e| anyhow::anyhow!("{e}"))?;
        loose_rp_filter(&cfg.tap.name);
        let burst = cfg.device.burst as usize;
        let workers = (cfg.daemon.workers as usize).max(1);
        let fd = tap.into_fd();
        // One writer (and io_uring) per judging thread, all on the same TAP.
        let mut sinks = Vec::with_capacity(workers);
        for _ in 0..workers {
            let w = TapWriter::new(
                fd.try_clone().context("duplicating the TAP descriptor")?,
                burst,
            );
            sinks.push(TapSink::new(w));
        }
        drop(fd);
        log::info!(
            "reinjecting into TAP {} ({} writer(s))",
            cfg.tap.name,
            sinks.len()
        );

        drop_privileges(cfg, steering)?;
        let rules = cfg.filter.ruleset();
        let mut fl =
            FilterLoop::start(vf, rules, sinks, burst, None).context("starting the filter loop")?;
        serve(&mut fl, cfg, path)
    }
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

/// Runs the loop with signals, reload and metrics as configured; prints the final counters.
pub fn serve<D: Device, S: PassSink>(
    fl: &mut FilterLoop<D, S>,
    cfg: &Config,
    path: &Path,
) -> Result<LoopReport> {
    let mut ctl = LoopControl::new();
    install_signal_handlers(&ctl)?;
    ctl.progress = true;
    ctl.interval = std::time::Duration::from_millis(cfg.stats.interval_ms.max(100));
    ctl.idle = crate::daemon::runloop::IdlePolicy::nap_us(cfg.daemon.idle_sleep_us);
    ctl.reloader = Some(reloader(path.to_path_buf(), cfg.reinject));
    let metrics = Arc::new(Metrics::default());
    let _server = match cfg.stats.prometheus {
        Some(addr) => Some(MetricsServer::start(addr, metrics.clone())?),
        None => None,
    };
    ctl.metrics = Some(metrics);
    let rep = run_loop(fl, &mut ctl).context("filter loop")?;
    let c = rep.counters;
    let out = if fl.vf_tx().is_some() {
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
    println!(
        "floodgate: rx {} | dropped {} | passed {} ({out}) | errors {} | reloads {} \
         ({} rejected) | PF resets {} | invariant {}",
        c.rx_packets,
        c.dropped,
        c.passed,
        c.errors,
        rep.reloads,
        rep.reload_errors,
        rep.pf_resets,
        if c.invariant_holds() {
            "holds"
        } else {
            "VIOLATED"
        }
    );
    Ok(rep)
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

/// The MAC address of netdev `name`, from sysfs.
fn pf_mac(name: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    crate::config::parse_mac(text.trim())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pf_mac_reads_sysfs_and_refuses_nonsense() {
        // Loopback exists everywhere and has the all-zero address.
        assert_eq!(super::pf_mac("lo"), Some([0; 6]));
        assert_eq!(super::pf_mac("no-such-if-xyz"), None);
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
