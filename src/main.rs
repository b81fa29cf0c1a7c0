//! `floodgate`: the filter daemon's command line.

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use floodgate::daemon::demo;
use std::path::PathBuf;
use std::process::ExitCode;

/// Steer a flood into an ixgbe VF, drop it at line rate, reinject the survivors into the kernel.
#[derive(Parser, Debug)]
#[command(name = "floodgate", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon on the built-in NIC model: a UDP/53 flood plus legitimate DNS, filtered.
    Demo {
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Generated packets per second (flood + legitimate + background).
        #[arg(long, default_value_t = 500_000)]
        rate: u64,
        /// Generate as fast as the model can instead of at --rate.
        #[arg(long, conflicts_with = "rate")]
        max_speed: bool,
        /// Print the final summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// Seed of the traffic generator (equal seeds give equal traffic).
        #[arg(long, default_value_t = 0x5EED)]
        seed: u64,
        /// Reinject the survivors into this TAP device (needs root or CAP_NET_ADMIN).
        #[arg(long)]
        tap: Option<String>,
        /// Worker threads behind the symmetric soft-RSS dispatcher (1 = judge inline).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Run the NIC model on its own thread, beside the filter loop, as hardware runs beside
        /// the CPU (default: in lockstep with the loop). On a busy machine the model can then
        /// overflow the VF ring while the filter thread waits for a CPU (counted as rx missed).
        #[arg(long)]
        nic_thread: bool,
        /// Where survivors go: "tap" (the kernel side, or the TAP of --tap), "vf" (back out of
        /// VF 0 to a next hop on the wire, zero copy) or "vf-pf" (out of VF 0 to the PF: the
        /// model loops them back into the VF, and the loop guard counts them as looped).
        #[arg(long, default_value = "tap")]
        reinject: demo::DemoReinject,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9110), for `floodgate top`.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// A live view of a running daemon (or `demo --metrics`): rates with a short history, rule
    /// hits, the top dropped sources, NIC missed frames, reloads, PF resets. q or Ctrl-C quits.
    Top {
        /// The daemon's metrics endpoint (default: the [stats] prometheus address of --config,
        /// else http://127.0.0.1:9110/metrics).
        #[arg(long, value_name = "URL")]
        metrics: Option<String>,
        /// Take the endpoint from this configuration's [stats] prometheus.
        #[arg(long, conflicts_with = "metrics")]
        config: Option<PathBuf>,
        /// Refresh interval in seconds.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print one frame as plain text (after two scrapes, --interval apart) and exit; works
        /// without a terminal.
        #[arg(long)]
        once: bool,
        /// Frame size for --once, as COLUMNSxROWS.
        #[arg(long, default_value = "80x24", requires = "once")]
        size: String,
        /// Scrapes --once takes (--interval apart) before printing: rates need 2, more fill
        /// the sparklines.
        #[arg(long, default_value_t = 2, requires = "once", value_parser = clap::value_parser!(u32).range(2..=3600))]
        samples: u32,
    },
    /// Run the daemon on a real VF as configured (SIGHUP reloads the rules, SIGINT/SIGTERM stop).
    Run {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a configuration file and print what would be installed.
    CheckConfig {
        /// The TOML configuration.
        file: PathBuf,
    },
    /// Work with filter rules.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Print a shell completion script to standard output
    /// (e.g. `floodgate completions bash > /etc/bash_completion.d/floodgate`).
    Completions {
        /// The shell.
        shell: CompletionShell,
    },
    /// Write the man pages (floodgate.1 and one per subcommand, e.g. floodgate-run.1) into DIR.
    Man {
        /// The directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Shells `floodgate completions` writes scripts for.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Subcommand, Debug)]
enum RulesCmd {
    /// Run the rules of a config over a pcap capture and print verdicts and per-rule hits.
    Test {
        /// The capture (pcap or pcapng).
        #[arg(long)]
        pcap: PathBuf,
        /// The configuration holding the rules.
        #[arg(long)]
        config: PathBuf,
        /// Print the verdict of every packet, not only the totals.
        #[arg(long)]
        verbose: bool,
        /// Write the sample rules' captures into this directory (the paths in the config are
        /// never written by a test run; without this option samples are counted, not kept).
        #[arg(long, value_name = "DIR")]
        samples: Option<PathBuf>,
    },
}

/// Stops with a clear message when the binary was built for CPU features this CPU lacks (the
/// project builds for x86-64-v2, see `.cargo/config.toml`), instead of dying on an illegal
/// instruction somewhere in the packet path.
fn check_cpu() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut missing = Vec::new();
        if cfg!(target_feature = "popcnt") && !std::arch::is_x86_feature_detected!("popcnt") {
            missing.push("popcnt");
        }
        if cfg!(target_feature = "ssse3") && !std::arch::is_x86_feature_detected!("ssse3") {
            missing.push("ssse3");
        }
        if cfg!(target_feature = "sse4.2") && !std::arch::is_x86_feature_detected!("sse4.2") {
            missing.push("sse4.2");
        }
        if !missing.is_empty() {
            return Err(format!(
                "this binary was built for x86-64-v2 and this CPU lacks {}; rebuild with \
                 RUSTFLAGS=\"-C target-cpu=native\" (or x86-64) cargo build --release",
                missing.join(", ")
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Err(e) = check_cpu() {
        eprintln!("floodgate: error: {e}");
        return ExitCode::FAILURE;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("floodgate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Demo {
            seconds,
            rate,
            max_speed,
            json,
            seed,
            tap,
            workers,
            nic_thread,
            reinject,
            metrics,
        } => {
            let opts = demo::DemoOptions {
                seconds,
                rate: (!max_speed).then_some(rate),
                json,
                seed,
                progress: !json,
                tap,
                workers: Some(workers),
                nic_thread,
                reinject,
                metrics,
            };
            let s = demo::run(&opts)?;
            if json {
                println!("{}", s.to_json());
            } else {
                demo::print_summary(&s);
            }
            let ok = s.invariant_holds() && s.all_legit_passed();
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Top {
            metrics,
            config,
            interval,
            once,
            size,
            samples,
        } => {
            top(metrics, config, interval, once.then_some(samples), &size)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { config } => {
            let rep = floodgate::daemon::run::run(&config)?;
            Ok(if rep.counters.invariant_holds() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::CheckConfig { file } => {
            print!("{}", floodgate::daemon::check_config(&file)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rules {
            cmd:
                RulesCmd::Test {
                    pcap,
                    config,
                    verbose,
                    samples,
                },
        } => floodgate::daemon::rules_test(&pcap, &config, verbose, samples.as_deref())
            .map(|_| ExitCode::SUCCESS),
        Cmd::Completions { shell } => {
            write_completions(shell, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { out } => {
            write_man_pages(&out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `floodgate top`: finds the endpoint, then draws live or prints one frame (`once`: after
/// that many scrapes).
fn top(
    metrics: Option<String>,
    config: Option<PathBuf>,
    interval: f64,
    once: Option<u32>,
    size: &str,
) -> Result<()> {
    use floodgate::top::{live, Endpoint};
    if !(0.1..=3600.0).contains(&interval) {
        anyhow::bail!("--interval must be between 0.1 and 3600 seconds (got {interval})");
    }
    let interval = std::time::Duration::from_secs_f64(interval);
    let ep = match (metrics, config) {
        (Some(url), _) => Endpoint::parse(&url)?,
        (None, Some(path)) => {
            let cfg = floodgate::config::Config::load(&path)?;
            let addr = cfg.stats.prometheus.with_context(|| {
                format!(
                    "{}: [stats] prometheus = false: the daemon serves no metrics to watch",
                    path.display()
                )
            })?;
            Endpoint::of(addr)
        }
        (None, None) => Endpoint::parse("http://127.0.0.1:9110/metrics")?,
    };
    if let Some(samples) = once {
        let (w, h) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u16>().ok()?, h.parse::<u16>().ok()?)))
            .filter(|&(w, h)| (20..=500).contains(&w) && (5..=200).contains(&h))
            .with_context(|| format!("--size {size:?}: COLUMNSxROWS between 20x5 and 500x200"))?;
        print!("{}", live::once(&ep, interval, samples, w, h)?);
        return Ok(());
    }
    live::run(&ep, interval)?;
    Ok(())
}

/// Writes the completion script of `shell`, generated from the CLI definition.
fn write_completions(shell: CompletionShell, w: &mut dyn std::io::Write) -> Result<()> {
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut Cli::command(), "floodgate", w);
    w.flush().context("writing the completion script")?;
    Ok(())
}

/// Writes `floodgate.1` and a page per subcommand (`floodgate-rules-test.1`, ...) into `dir`.
fn write_man_pages(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    Ok(())
}
