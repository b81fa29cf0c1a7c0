//! What `floodgate top` shows: rates from successive samples, and the frame drawn from them.

use super::Sample;
use ratatui::backend::TestBackend;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::{Frame, Terminal};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Rate samples kept for the sparklines (more than any terminal is wide).
pub const HISTORY: usize = 300;

/// Per-second rates between two samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Packets per second taken from the rings.
    pub rx: f64,
    /// Dropped per second.
    pub dropped: f64,
    /// Passed per second.
    pub passed: f64,
    /// Written to the TAP per second.
    pub tap: f64,
    /// Sent back out of the VF per second.
    pub vf_tx: f64,
    /// Frames the NIC missed per second (`None`: no counter).
    pub nic_missed: Option<f64>,
    /// Hits per second by rule.
    pub rules: Vec<(String, f64)>,
    /// Dropped per second by top source (estimates; `None` for a source new in the table),
    /// with their estimated totals.
    pub sources: Vec<(String, Option<f64>, u64)>,
    /// By worker: (worker, dropped per second, passed per second).
    pub workers: Vec<(String, f64, f64)>,
}

/// The state of the view: the last sample, the rates and their history.
#[derive(Debug, Clone)]
pub struct TopState {
    /// The endpoint shown in the title.
    pub endpoint: String,
    /// The refresh interval shown in the title.
    pub interval: Duration,
    last: Option<(Instant, Sample)>,
    rates: Option<Rates>,
    history: VecDeque<Rates>,
    error: Option<String>,
}

fn per_sec(now: u64, before: u64, secs: f64) -> f64 {
    // A counter that went back is a restarted daemon: no rate for this interval.
    now.saturating_sub(before) as f64 / secs
}

impl TopState {
    /// An empty view of `endpoint`.
    pub fn new(endpoint: impl Into<String>, interval: Duration) -> TopState {
        TopState {
            endpoint: endpoint.into(),
            interval,
            last: None,
            rates: None,
            history: VecDeque::with_capacity(HISTORY),
            error: None,
        }
    }

    /// Takes a sample read at `at`; from the second one on, rates are known.
    pub fn update(&mut self, s: Sample, at: Instant) {
        self.error = None;
        if let Some((then, prev)) = &self.last {
            let secs = at.saturating_duration_since(*then).as_secs_f64();
            if secs > 0.0 {
                let r = rates(prev, &s, secs);
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(r.clone());
                self.rates = Some(r);
            }
        }
        self.last = Some((at, s));
    }

    /// A scrape failed: shown until the next one succeeds.
    pub fn failed(&mut self, why: impl Into<String>) {
        self.error = Some(why.into());
    }

    /// The current rates (after two samples).
    pub fn rates(&self) -> Option<&Rates> {
        self.rates.as_ref()
    }

    /// The last sample.
    pub fn sample(&self) -> Option<&Sample> {
        self.last.as_ref().map(|(_, s)| s)
    }
}

fn rates(prev: &Sample, s: &Sample, secs: f64) -> Rates {
    let of =
        |list: &[(String, u64)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    Rates {
        rx: per_sec(s.rx, prev.rx, secs),
        dropped: per_sec(s.dropped, prev.dropped, secs),
        passed: per_sec(s.passed, prev.passed, secs),
        tap: per_sec(s.tap, prev.tap, secs),
        vf_tx: per_sec(s.vf_tx, prev.vf_tx, secs),
        nic_missed: s
            .nic_missed
            .map(|m| per_sec(m, prev.nic_missed.unwrap_or(m), secs)),
        rules: s
            .rules
            .iter()
            .map(|(n, h)| {
                (
                    n.clone(),
                    per_sec(*h, of(&prev.rules, n).unwrap_or(*h), secs),
                )
            })
            .collect(),
        // A source new in the table has no earlier estimate: its rate shows from the next
        // interval on.
        sources: s
            .top_sources
            .iter()
            .map(|(a, n)| {
                let r = of(&prev.top_sources, a).map(|p| per_sec(*n, p, secs));
                (a.clone(), r, *n)
            })
            .collect(),
        workers: s
            .workers
            .iter()
            .map(|(w, d, p)| {
                let before = prev.workers.iter().find(|x| &x.0 == w);
                let (bd, bp) = before.map_or((*d, *p), |b| (b.1, b.2));
                (w.clone(), per_sec(*d, bd, secs), per_sec(*p, bp, secs))
            })
            .collect(),
    }
}

/// A rate with a unit, at most 10 characters: `14.88 Mpps`, `41.2 kpps`, `12 pps`.
pub fn fmt_pps(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2} Mpps", pps / 1e6)
    } else if pps >= 1e3 {
        format!("{:.1} kpps", pps / 1e3)
    } else {
        format!("{pps:.0} pps")
    }
}

fn fmt_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}k", n as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// Draws one frame of the view into `f`'s whole area. Everything fits from 80×24 on; a smaller
/// terminal gets the same frame cut off.
pub fn draw(f: &mut Frame, st: &TopState) {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(7),
            Constraint::Min(4),
            Constraint::Length(3),
        ])
        .split(f.area());
    let title = Line::from(vec![
        Span::styled(" floodgate top ", bold().fg(Color::Black).bg(Color::Cyan)),
        Span::raw(format!(
            " {} · every {:.1} s · q quits",
            st.endpoint,
            st.interval.as_secs_f64()
        )),
    ]);
    f.render_widget(Paragraph::new(title), rows[0]);
    draw_traffic(f, rows[1], st);
    let mid = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(40), Constraint::Percentage(60)])
        .split(rows[2]);
    draw_rules(f, mid[0], st);
    draw_sources(f, mid[1], st);
    draw_status(f, rows[3], st);
}

fn draw_traffic(f: &mut Frame, area: Rect, st: &TopState) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" traffic, packets/s (history: a bar per sample, each line to its scale) ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let via_vf = st.sample().is_some_and(|s| s.vf_tx > 0 && s.tap == 0);
    type Get = fn(&Rates) -> f64;
    let lines: [(&str, Get, Color); 5] = [
        ("rx", |r| r.rx, Color::White),
        ("drop", |r| r.dropped, Color::Red),
        ("pass", |r| r.passed, Color::Green),
        if via_vf {
            ("vf tx", |r: &Rates| r.vf_tx, Color::Blue)
        } else {
            ("tap", |r: &Rates| r.tap, Color::Blue)
        },
        ("missed", |r| r.nic_missed.unwrap_or(0.0), Color::Yellow),
    ];
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(1); 5])
        .split(inner);
    for ((label, get, color), row) in lines.iter().zip(rows.iter()) {
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Length(19), Constraint::Min(1)])
            .split(*row);
        let value = match st.rates() {
            Some(r) if *label == "missed" && r.nic_missed.is_none() => "n/a".to_string(),
            Some(r) => fmt_pps(get(r)),
            None => "…".to_string(),
        };
        let text = Line::from(vec![
            Span::styled(format!("{label:<7}"), Style::default().fg(*color)),
            Span::styled(format!("{value:>11}"), bold()),
        ]);
        f.render_widget(Paragraph::new(text), cols[0]);
        let width = cols[1].width as usize;
        let skip = st.history.len().saturating_sub(width);
        let data: Vec<u64> = st
            .history
            .iter()
            .skip(skip)
            .map(|r| get(r).max(0.0) as u64)
            .collect();
        // Each line to its own scale: the shape of every rate shows, small ones included.
        let max = data.iter().copied().max().unwrap_or(0).max(1);
        let spark = Sparkline::default()
            .data(&data)
            .max(max)
            .style(Style::default().fg(*color));
        f.render_widget(spark, cols[1]);
    }
}

fn draw_rules(f: &mut Frame, area: Rect, st: &TopState) {
    let header = Row::new(["rule", "hits/s"]).style(bold());
    let rows: Vec<Row> = st
        .rates()
        .map(|r| {
            r.rules
                .iter()
                .map(|(name, rate)| {
                    Row::new([Cell::from(name.clone()), Cell::from(fmt_pps(*rate))])
                })
                .collect()
        })
        .unwrap_or_default();
    let t = Table::new(rows, [Constraint::Min(10), Constraint::Length(10)])
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(" rules "));
    f.render_widget(t, area);
}

fn draw_sources(f: &mut Frame, area: Rect, st: &TopState) {
    let header = Row::new(["dropped source", "pkts/s"]).style(bold());
    let rows: Vec<Row> = st
        .rates()
        .map(|r| {
            r.sources
                .iter()
                .map(|(src, rate, _)| {
                    Row::new([
                        Cell::from(src.clone()),
                        Cell::from(rate.map_or("new".into(), fmt_pps)),
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    let empty = rows.is_empty();
    let t = Table::new(rows, [Constraint::Min(15), Constraint::Length(10)])
        .header(header)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" top dropped sources (sampled) "),
        );
    f.render_widget(t, area);
    if empty && area.height > 3 && area.width > 4 {
        let hint = Rect {
            x: area.x + 2,
            y: area.y + 2,
            width: area.width - 4,
            height: 1,
        };
        f.render_widget(Paragraph::new("nothing dropped yet"), hint);
    }
}

fn draw_status(f: &mut Frame, area: Rect, st: &TopState) {
    let mut first = String::new();
    let mut reloads = String::new();
    let mut second = String::new();
    if let Some(s) = st.sample() {
        let missed = match (s.nic_missed, st.rates().and_then(|r| r.nic_missed)) {
            (Some(m), Some(r)) => format!("{} ({}/s)", fmt_count(m), fmt_count(r as u64)),
            (Some(m), None) => fmt_count(m),
            (None, _) => "n/a".into(),
        };
        let last = s
            .reload_last
            .filter(|_| s.reloads > 0)
            .map(|l| format!(", last {:.1} ms", l * 1e3))
            .unwrap_or_default();
        first = format!(
            " nic missed {missed} · errors {} · PF resets {}",
            fmt_count(s.errors),
            s.pf_resets
        );
        reloads = format!(
            " reloads {} ({} rejected{last})",
            s.reloads, s.reload_errors
        );
        second = match st.rates() {
            Some(r) if !r.workers.is_empty() => {
                let parts: Vec<String> = r
                    .workers
                    .iter()
                    .map(|(w, d, p)| format!("w{w} {}/{}", fmt_pps(*d), fmt_pps(*p)))
                    .collect();
                format!(" workers drop/pass: {}", parts.join(" · "))
            }
            _ if s.workers.is_empty() => " judging inline (one filter thread)".into(),
            _ => String::new(),
        };
    }
    if let Some(e) = &st.error {
        second = format!(" scrape failed, retrying: {e}");
    }
    let style = if st.error.is_some() {
        Style::default().fg(Color::Red)
    } else {
        Style::default()
    };
    let text = vec![
        Line::from(first),
        Line::from(reloads),
        Line::styled(second, style),
    ];
    f.render_widget(Paragraph::new(text), area);
}

/// Draws one frame into a `width`×`height` buffer and returns it as text: one line per row,
/// trailing blanks trimmed (what `--once` prints).
pub fn render_text(st: &TopState, width: u16, height: u16) -> String {
    let backend = TestBackend::new(width, height);
    let mut term = match Terminal::new(backend) {
        Ok(t) => t,
        Err(e) => return format!("cannot draw: {e}\n"),
    };
    if let Err(e) = term.draw(|f| draw(f, st)) {
        return format!("cannot draw: {e}\n");
    }
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64) -> Sample {
        Sample {
            rx: 1_000_000 * t,
            dropped: 990_000 * t,
            passed: 10_000 * t,
            tap: 10_000 * t,
            nic_missed: Some(5 * t),
            reloads: 1,
            reload_last: Some(0.0042),
            pf_resets: 2,
            rules: vec![
                ("known-clients".into(), 10_000 * t),
                ("dns-flood".into(), 990_000 * t),
                ("default".into(), 0),
            ],
            top_sources: vec![
                ("198.18.0.66".into(), 300_000 * t),
                ("2001:db8:ffff:ffff:ffff:ffff:ffff:1".into(), 64 * t),
            ],
            workers: vec![
                ("0".into(), 500_000 * t, 5_000 * t),
                ("1".into(), 490_000 * t, 5_000 * t),
            ],
            ..Default::default()
        }
    }

    fn state(n: u64) -> TopState {
        let mut st = TopState::new("http://127.0.0.1:9110/metrics", Duration::from_secs(1));
        let t0 = Instant::now();
        for t in 0..n {
            st.update(sample(t), t0 + Duration::from_secs(t));
        }
        st
    }

    #[test]
    fn rates_come_from_successive_samples() {
        let st = state(3);
        let r = st.rates().unwrap();
        assert_eq!((r.rx, r.dropped, r.passed), (1e6, 990e3, 10e3));
        assert_eq!(r.nic_missed, Some(5.0));
        assert_eq!(r.rules[1], ("dns-flood".to_string(), 990e3));
        assert_eq!(r.sources[0].1, Some(300e3));
        assert_eq!(r.workers[1], ("1".to_string(), 490e3, 5e3));
        assert_eq!(st.history.len(), 2);
        // One sample: no rates yet. A counter that went back (restart): zero, not a wrap.
        assert!(state(1).rates().is_none());
        let mut st = state(3);
        st.update(sample(1), Instant::now() + Duration::from_secs(10));
        assert_eq!(st.rates().unwrap().rx, 0.0);
    }

    #[test]
    fn an_80x24_frame_holds_everything() {
        let text = render_text(&state(30), 80, 24);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 24, "{text}");
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{text}");
        for want in [
            "floodgate top",
            "http://127.0.0.1:9110/metrics",
            "1.00 Mpps",
            "990.0 kpps",
            "10.0 kpps",
            "known-clients",
            "dns-flood",
            "default",
            "198.18.0.66",
            "300.0 kpps",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:1",
            "nic missed",
            "reloads 1 (0 rejected, last 4.2 ms)",
            "PF resets 2",
            "w0 500.0 kpps/5.0 kpps",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        // The sparklines draw bars for the history.
        assert!(text.contains('█'), "{text}");
        // The bottom line is inside the frame.
        assert!(lines[23].contains("workers"), "{text}");
    }

    #[test]
    fn before_the_second_sample_and_after_a_failed_scrape() {
        let mut st = state(1);
        let text = render_text(&st, 80, 24);
        assert!(
            text.contains('…') && text.contains("nothing dropped yet"),
            "{text}"
        );
        st.failed("connection refused");
        let text = render_text(&st, 80, 24);
        assert!(
            text.contains("scrape failed, retrying: connection refused"),
            "{text}"
        );
        // Smaller terminals get a cut frame, not a panic.
        let small = render_text(&state(5), 30, 8);
        assert_eq!(small.lines().count(), 8);
    }
}
