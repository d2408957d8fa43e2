//! A one-line progress display on stderr, drawn only when stderr is a
//! terminal (so nothing lands in a log or a pipe), at most every
//! `REDRAW_INTERVAL`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::info_text;

/// Least time between two redraws.
const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

pub struct StatusLine {
    enabled: bool,
    drawn: bool,
    last: Option<Instant>,
    started: Instant,
}

impl StatusLine {
    pub fn new() -> StatusLine {
        StatusLine { enabled: std::io::stderr().is_terminal(), drawn: false, last: None, started: Instant::now() }
    }

    /// Whether anything is shown: stderr is a terminal.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Time since the line was made.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Redraw with the text `line` makes, unless the last redraw is too
    /// recent (then `line` is not called).
    pub fn show(&mut self, line: impl FnOnce(Duration) -> String) {
        if !self.enabled || self.last.is_some_and(|t| t.elapsed() < REDRAW_INTERVAL) {
            return;
        }
        self.last = Some(Instant::now());
        let text = line(self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{text}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erase the line, so what is printed next starts clean.
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
        self.last = None;
    }
}

/// `what`'s progress: `dump: 12034 inodes, 1.2 GiB, 85.3 MiB/s`.
pub fn transfer_line(what: &str, inodes: u64, bytes: u64, elapsed: Duration) -> String {
    let rate = bytes as f64 / elapsed.as_secs_f64().max(1e-3);
    format!("{what}: {inodes} inodes, {}, {}/s", info_text::bytes(bytes), info_text::bytes(rate as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_a_person_would_write_them() {
        assert_eq!(transfer_line("dump", 7, 2 << 20, Duration::from_secs(2)), "dump: 7 inodes, 2.0 MiB, 1.0 MiB/s");
    }
}
