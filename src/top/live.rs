//! The live view on a real terminal: alternate screen and raw mode, restored on every way out
//! (q, Esc, Ctrl-C, SIGTERM or SIGHUP, an error, a panic unwinding through [`run`]).

use super::view::{draw, TopState};
use super::{Endpoint, Sample};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;
use std::io::{IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors of the live view.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Standard output is not a terminal.
    #[error(
        "standard output is not a terminal: `floodgate top` draws a live view; use --once to \
         print one frame as text"
    )]
    NotATerminal,
    /// The first scrape failed (nothing to show).
    #[error(transparent)]
    Scrape(#[from] super::TopError),
    /// The terminal could not be set up or drawn on.
    #[error("setting up or drawing on the terminal")]
    Terminal(#[source] std::io::Error),
}

/// Puts the terminal back when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

/// How long one scrape may take before it counts as failed.
pub fn scrape_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_millis(200), Duration::from_secs(2))
}

/// Scrapes `ep` every `interval` and draws the view until q, Esc or Ctrl-C. The first scrape
/// must succeed (a clear error otherwise, before the screen is touched); later failures are
/// shown in the view and retried.
pub fn run(ep: &Endpoint, interval: Duration) -> Result<(), LiveError> {
    if !std::io::stdout().is_terminal() {
        return Err(LiveError::NotATerminal);
    }
    let timeout = scrape_timeout(interval);
    let mut st = TopState::new(ep.url.clone(), interval);
    st.update(Sample::fetch(ep, timeout)?, Instant::now());
    // In raw mode Ctrl-C is a key; SIGTERM and SIGHUP (the SSH session went away) end the view
    // through the same way out, so the terminal is restored.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, stop.clone()).map_err(LiveError::Terminal)?;
    }
    enable_raw_mode().map_err(LiveError::Terminal)?;
    let _restore = Restore;
    execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide).map_err(LiveError::Terminal)?;
    let mut term: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(LiveError::Terminal)?;
    term.clear().map_err(LiveError::Terminal)?;
    let mut next = Instant::now() + interval;
    loop {
        term.draw(|f| draw(f, &st)).map_err(LiveError::Terminal)?;
        // Keys and resizes until the next scrape is due.
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !event::poll(left.min(Duration::from_millis(100))).map_err(LiveError::Terminal)? {
                continue;
            }
            match event::read().map_err(LiveError::Terminal)? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
                Event::Resize(..) => {
                    term.autoresize().map_err(LiveError::Terminal)?;
                    term.draw(|f| draw(f, &st)).map_err(LiveError::Terminal)?;
                }
                _ => {}
            }
        }
        next += interval;
        match Sample::fetch(ep, timeout) {
            Ok(s) => st.update(s, Instant::now()),
            Err(e) => st.failed(e.to_string()),
        }
    }
}

/// `--once`: `samples` scrapes (at least 2: rates need two) `interval` apart, then one frame as
/// text. More samples fill the sparklines.
pub fn once(
    ep: &Endpoint,
    interval: Duration,
    samples: u32,
    width: u16,
    height: u16,
) -> Result<String, LiveError> {
    let timeout = scrape_timeout(interval);
    let mut st = TopState::new(ep.url.clone(), interval);
    let mut next = Instant::now();
    for i in 0..samples.max(2) {
        if i > 0 {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        next += interval;
        st.update(Sample::fetch(ep, timeout)?, Instant::now());
    }
    Ok(super::view::render_text(&st, width, height))
}
