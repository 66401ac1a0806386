//! Progress of long steps: a bar redrawn in place on a terminal, plain lines (one per
//! table, and every few million rows) otherwise, on stderr so stdout stays the
//! command's result.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Rows between plain progress lines.
const PLAIN_EVERY: u64 = 2_000_000;
/// Least time between redraws of the bar.
const REDRAW: Duration = Duration::from_millis(100);

pub(crate) struct Progress {
    step: &'static str,
    terminal: bool,
    started: Instant,
    table_started: Instant,
    drawn: Instant,
    next_line: u64,
}

impl Progress {
    pub(crate) fn new(step: &'static str) -> Progress {
        let now = Instant::now();
        Progress {
            step,
            terminal: std::io::stderr().is_terminal(),
            started: now,
            table_started: now,
            drawn: now,
            next_line: PLAIN_EVERY,
        }
    }

    /// `done` of `total` rows of `table`.
    pub(crate) fn update(&mut self, table: &str, done: u64, total: u64) {
        let mut err = std::io::stderr();
        if self.terminal {
            if self.drawn.elapsed() < REDRAW {
                return;
            }
            self.drawn = Instant::now();
            let ratio = if total == 0 { 1.0 } else { (done as f64 / total as f64).min(1.0) };
            let filled = (ratio * 30.0) as usize;
            let _ = write!(
                err,
                "\r{} {:<28} [{}{}] {:>5.1}% {done}/{total} rows",
                self.step,
                table,
                "#".repeat(filled),
                ".".repeat(30 - filled),
                ratio * 100.0
            );
            let _ = err.flush();
        } else if done >= self.next_line {
            self.next_line = done + PLAIN_EVERY;
            let _ = writeln!(err, "{}: {table}: {done} of {total} rows", self.step);
        }
    }

    /// `table` is done with `rows` rows. Quick tables are not reported in plain
    /// output: only the long steps are worth a line in a log.
    pub(crate) fn finish(&mut self, table: &str, rows: u64) {
        let took = std::mem::replace(&mut self.table_started, Instant::now()).elapsed();
        self.next_line = PLAIN_EVERY;
        if !self.terminal && took < Duration::from_secs(1) {
            return;
        }
        let mut err = std::io::stderr();
        let clear = if self.terminal { "\r\x1b[2K" } else { "" };
        let _ =
            writeln!(err, "{clear}{}: {table}: {rows} rows ({:.1}s)", self.step, self.started.elapsed().as_secs_f64());
    }
}
