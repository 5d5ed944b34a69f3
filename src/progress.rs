//! Upload progress on stderr: a bar (bytes, rate, ETA) when stderr is a terminal, a plain
//! line every ten seconds otherwise (CI logs), nothing under `-q`.
//!
//! It only watches byte counters that the uploads advance; it never slows or changes them.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Pushes smaller than this finish before a bar would be worth drawing.
const MIN_BYTES: u64 = 8 << 20;
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Turns progress output off (`-q`) or on for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// A running display; stop it with [`Progress::finish`].
pub struct Progress {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Shows progress towards `total` bytes (which may grow as work is found), counted as
    /// the sum of what each counter has gained since its baseline. Nothing is drawn while the
    /// total is too small to be worth it.
    pub fn start(total: Arc<AtomicU64>, counters: Vec<(Arc<AtomicU64>, u64)>) -> Progress {
        if !ENABLED.load(Ordering::Relaxed) {
            return Progress {
                stop: None,
                task: None,
            };
        }
        let done = move || -> (u64, u64) {
            let total = total.load(Ordering::Relaxed);
            let sum: u64 = counters
                .iter()
                .map(|(c, base)| c.load(Ordering::Relaxed).saturating_sub(*base))
                .sum();
            (sum.min(total), total)
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = if std::io::stderr().is_terminal() {
            tokio::spawn(bar(rx, done))
        } else {
            tokio::spawn(lines(rx, done))
        };
        Progress {
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A bar on a terminal, redrawn five times a second once the total is worth it.
async fn bar(mut stop: tokio::sync::oneshot::Receiver<()>, done: impl Fn() -> (u64, u64)) {
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let (d, total) = done();
                if total >= MIN_BYTES && bar.is_hidden() {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                bar.set_length(total);
                bar.set_position(d);
            }
        }
    }
    bar.finish_and_clear();
}

/// A line every ten seconds in a log, once the total is worth it.
async fn lines(mut stop: tokio::sync::oneshot::Receiver<()>, done: impl Fn() -> (u64, u64)) {
    let start = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + LINE_EVERY, LINE_EVERY);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let (d, total) = done();
                if total < MIN_BYTES {
                    continue;
                }
                let rate = d as f64 / start.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "reprise: uploaded {:.1} of {:.1} MiB ({:.1} MiB/s)",
                    mib(d), mib(total), mib(rate as u64)
                );
            }
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}
