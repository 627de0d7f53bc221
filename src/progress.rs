//! Progress of long work that tells the truth: on a terminal an indicatif bar with the elapsed
//! time, a rate measured over the last seconds of work and an ETA from that rate; off a
//! terminal (a Slurm log, a pipe) one plain line every `--progress-interval` seconds on
//! stderr; nothing with `--quiet`.
//!
//! indicatif's own `per_sec` and `eta` start from the first tick, so a run whose first tile
//! takes seconds to prefetch shows "0.3/s, eta 2d" and settles only minutes later; here the
//! rate is the work done over the last minute (over the whole run while it is
//! younger), and the ETA comes from it.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Seconds between two progress lines off a terminal (`--progress-interval`), in ms.
static INTERVAL_MS: AtomicU64 = AtomicU64::new(30_000);

/// The rate is measured over this much recent time: long enough to smooth the bursts in
/// which tiles finish, short enough to follow a change of pace.
const WINDOW: Duration = Duration::from_secs(60);

/// Sets the time between two progress lines off a terminal (`--progress-interval`).
pub fn set_interval(seconds: f64) {
    if seconds.is_finite() && seconds > 0.0 {
        INTERVAL_MS.store((seconds * 1000.0).round().max(1.0) as u64, Ordering::Relaxed);
    }
}

/// What is counted and when: shared with the thread that draws or prints.
struct Counter {
    what: String,
    len: u64,
    done: AtomicU64,
    start: Instant,
    /// (time, units done) samples of the last [`WINDOW`], oldest first.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Counter {
    /// Records how much is done now (called a few times a second by the display thread).
    fn sample(&self) {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back((now, self.done.load(Ordering::Relaxed)));
        // Keep one sample older than the window, to measure from the window's start.
        while s.len() > 2 && now.duration_since(s[1].0) > WINDOW {
            s.pop_front();
        }
    }

    /// Units per second over the last [`WINDOW`] (over the whole run while it is younger), so
    /// that work emitted in bursts (a slab of tiles at a time) reads as its mean rate.
    fn rate(&self) -> Option<f64> {
        let now = Instant::now();
        let done = self.done.load(Ordering::Relaxed);
        let (t0, d0) = if now.duration_since(self.start) <= WINDOW {
            (self.start, 0)
        } else {
            let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            s.front().copied().unwrap_or((self.start, 0))
        };
        let dt = now.duration_since(t0).as_secs_f64();
        (dt > 0.0 && done > d0).then(|| (done - d0) as f64 / dt)
    }

    fn summary(&self) -> (String, String) {
        let done = self.done.load(Ordering::Relaxed);
        match self.rate() {
            Some(r) => (format!("{}/s", human_rate(r)), human_time(self.len.saturating_sub(done) as f64 / r)),
            None => ("starting".into(), "?".into()),
        }
    }

    fn line(&self) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let pct = if self.len > 0 { 100.0 * done as f64 / self.len as f64 } else { 100.0 };
        let (rate, eta) = self.summary();
        format!(
            "{}: {done}/{} ({pct:.1} %), {rate}, elapsed {}, eta {eta}",
            self.what,
            self.len,
            human_time(self.start.elapsed().as_secs_f64())
        )
    }
}

fn human_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 1.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.3}")
    }
}

/// `4.5s`, `45s`, `12m05s`, `3h20m`.
pub fn human_time(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    if s < 10.0 {
        return format!("{:.1}s", s.max(0.0));
    }
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Progress over `len` units of one kind of work.
pub struct Progress {
    counter: Arc<Counter>,
    bar: Option<ProgressBar>,
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A progress display over `len` units labelled `what`: a bar on a terminal, periodic lines
/// off one, nothing unless `show`.
pub fn bar(len: u64, what: &str, show: bool) -> Progress {
    let counter = Arc::new(Counter {
        what: what.to_string(),
        len,
        done: AtomicU64::new(0),
        start: Instant::now(),
        samples: Mutex::new(VecDeque::new()),
    });
    if !show {
        return Progress { counter, bar: None, stop: None, thread: None };
    }
    let (stop, stopped) = bounded::<()>(1);
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed_precise} ({prefix})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        pb.set_prefix("starting");
        pb
    });
    let (c, b) = (counter.clone(), bar.clone());
    let thread = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            let mut printed = Instant::now();
            while stopped.recv_timeout(Duration::from_millis(250)).is_err() {
                c.sample();
                match &b {
                    Some(pb) => {
                        let (rate, eta) = c.summary();
                        pb.set_position(c.done.load(Ordering::Relaxed));
                        pb.set_prefix(format!("{rate}, eta {eta}"));
                    }
                    None => {
                        if printed.elapsed() >= Duration::from_millis(INTERVAL_MS.load(Ordering::Relaxed)) {
                            printed = Instant::now();
                            eprintln!("{}", c.line());
                        }
                    }
                }
            }
        })
        .ok();
    Progress { counter, bar, stop: Some(stop), thread }
}

impl Progress {
    /// Counts `n` more units done.
    pub fn inc(&self, n: u64) {
        self.counter.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Units done so far.
    pub fn position(&self) -> u64 {
        self.counter.done.load(Ordering::Relaxed)
    }

    /// The line printed off a terminal, now.
    pub fn line(&self) -> String {
        self.counter.line()
    }

    /// Ends the display and removes the bar.
    pub fn finish_and_clear(&self) {
        if let Some(s) = &self.stop {
            let _ = s.try_send(());
        }
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish_and_clear();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_work_done_over_the_time_taken() {
        let p = bar(1000, "test", false);
        assert_eq!(p.counter.summary().0, "starting");
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..10 {
            p.inc(10);
            p.counter.sample();
            std::thread::sleep(Duration::from_millis(100));
        }
        // 100 units in ~1.3 s, a slow start included.
        let r = p.counter.rate().unwrap();
        let mean = 100.0 / p.counter.start.elapsed().as_secs_f64();
        assert!((r - mean).abs() < 0.05 * mean, "{r} vs {mean}");
        assert!(p.line().starts_with("test: 100/1000 (10.0 %), "), "{}", p.line());
    }

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(human_time(5.24), "5.2s");
        assert_eq!(human_time(45.4), "45s");
        assert_eq!(human_time(725.0), "12m05s");
        assert_eq!(human_time(12_000.0), "3h20m");
    }
}
