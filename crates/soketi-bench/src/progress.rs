//! The progress bar on stderr while a run goes on; nothing when turned off or not on a terminal.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar, or nothing.
pub(crate) struct Progress(Option<ProgressBar>);

impl Progress {
    pub(crate) fn new(enabled: bool) -> Self {
        if !enabled {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} {prefix:>10} [{bar:30}] {pos}/{len} {elapsed:>4} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self(Some(bar))
    }

    /// Starts a phase of `len` units.
    pub(crate) fn phase(&self, name: &str, len: u64) {
        if let Some(bar) = &self.0 {
            bar.set_prefix(name.to_owned());
            bar.set_length(len);
            bar.set_position(0);
            bar.set_message("");
            bar.reset_elapsed();
        }
    }

    pub(crate) fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    /// A phase measured in tenths of a second of `length`: its position is the time spent.
    pub(crate) fn tick_time(&self, started: Instant, length: Duration, message: String) {
        let tenths = |duration: Duration| (duration.as_millis() / 100) as u64;
        if let Some(bar) = &self.0 {
            bar.set_length(tenths(length));
            bar.set_position(tenths(started.elapsed()).min(tenths(length)));
            bar.set_message(message);
        }
    }

    /// A phase that only waits for `length`.
    pub(crate) async fn timed(&self, name: &str, length: Duration) {
        self.phase(name, 0);
        let started = Instant::now();
        let end = tokio::time::Instant::now() + length;
        while tokio::time::Instant::now() < end {
            self.tick_time(started, length, String::new());
            tokio::time::sleep_until(
                end.min(tokio::time::Instant::now() + Duration::from_millis(250)),
            )
            .await;
        }
    }

    /// Ticks the bar against `length` from `started` until every task has finished.
    pub(crate) async fn until_done<T>(
        &self,
        tasks: &[tokio::task::JoinHandle<T>],
        started: Instant,
        length: Duration,
    ) {
        while tasks.iter().any(|task| !task.is_finished()) {
            self.tick_time(started, length, String::new());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
