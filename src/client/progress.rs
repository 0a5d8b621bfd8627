//! What the `rsftp` shell prints, and its progress bars.
//!
//! Command output and notes go to one writer (stdout); bars go to stderr, and only when
//! it is a terminal. Every line is written through the bars' [`MultiProgress`], which
//! takes the bars off the screen while it prints and puts them back after, so a note
//! never lands in the middle of a bar. A write error (a closed pipe, typically) is kept
//! for the shell to act on rather than lost or turned into a panic.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::transfer::Progress;
use crate::auth::format_size;

/// A bar: name, bar, bytes, rate and time left. The overall bar of a multi-file
/// transfer looks the same, with the file count for a name.
const TEMPLATE: &str =
    "{msg:24!} [{bar:30}] {bytes:>10} / {total_bytes:<10} {binary_bytes_per_sec:>12}  ETA {eta}";

struct Output {
    out: Box<dyn Write + Send>,
    error: Option<io::Error>,
}

/// Where the shell's output goes. Cheap to clone; clones share the writer and the bars.
#[derive(Clone)]
pub struct Printer {
    output: Arc<Mutex<Output>>,
    bars: MultiProgress,
    show_bars: bool,
    quiet: bool,
}

impl Printer {
    /// `quiet` drops notes (progress, "verified md5" lines) but never command output or
    /// errors. `show_bars` draws bars on stderr; pass whether it is a terminal.
    pub fn new(out: Box<dyn Write + Send>, quiet: bool, show_bars: bool) -> Printer {
        let show_bars = show_bars && !quiet;
        let target = if show_bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Printer {
            output: Arc::new(Mutex::new(Output { out, error: None })),
            bars: MultiProgress::with_draw_target(target),
            show_bars,
            quiet,
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Whether bars are drawn.
    pub fn shows_bars(&self) -> bool {
        self.show_bars
    }

    fn write_line(&self, line: &str) {
        self.bars.suspend(|| {
            let mut output = self.output.lock().unwrap_or_else(|p| p.into_inner());
            if output.error.is_some() {
                return;
            }
            let written = writeln!(output.out, "{line}").and_then(|()| output.out.flush());
            if let Err(err) = written {
                output.error = Some(err);
            }
        });
    }

    /// A line the command was asked for (a listing, `pwd`): printed even when quiet.
    pub fn out(&self, line: &str) {
        self.write_line(line);
    }

    /// A line about how things went (resuming, verified): dropped when quiet.
    pub fn note(&self, line: &str) {
        if !self.quiet {
            self.write_line(line);
        }
    }

    /// A warning or error, on stderr, always.
    pub fn warn(&self, line: &str) {
        self.bars.suspend(|| {
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{line}");
        });
    }

    /// The first error writing output, if any, taken once.
    pub fn take_error(&self) -> Option<io::Error> {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error
            .take()
    }

    /// A bar for one file, shown once the transfer knows its size. With `overall`, it
    /// moves that bar too.
    pub fn file_bar(&self, label: &str, overall: Option<&OverallBar>) -> FileBar {
        FileBar {
            bar: hidden_bar(label),
            overall: overall.map(|o| o.bar.clone()),
            printer: self.clone(),
            label: label.to_owned(),
            started: Mutex::new(None),
        }
    }

    /// A bar over `files` files of `bytes` bytes in all.
    pub fn overall_bar(&self, bytes: u64, files: usize) -> OverallBar {
        let bar = hidden_bar(&format!("total: {files} files"));
        bar.set_length(bytes);
        let bar = self.bars.add(bar);
        OverallBar {
            bar,
            files,
            done: Mutex::new(0),
            bars: self.bars.clone(),
        }
    }
}

fn hidden_bar(label: &str) -> ProgressBar {
    // The template is a constant that parses; the fallback only guards against a typo.
    let style = ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
        .with_style(style)
        .with_message(label.to_owned())
}

/// The bar over a multi-file transfer (`get -r`, `put *.txt`).
pub struct OverallBar {
    bar: ProgressBar,
    files: usize,
    done: Mutex<usize>,
    bars: MultiProgress,
}

impl OverallBar {
    /// `bytes` that did not need to move (a file already there) count as done.
    pub fn add(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    /// One more file is finished (or failed).
    pub fn file_done(&self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        *done += 1;
        self.bar
            .set_message(format!("total: {} of {} files", *done, self.files));
    }
}

impl Drop for OverallBar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        self.bars.remove(&self.bar);
    }
}

/// The bar of one file; it is a [`Progress`] for the transfer engine. It leaves the
/// screen when dropped, finished or not.
pub struct FileBar {
    bar: ProgressBar,
    overall: Option<ProgressBar>,
    printer: Printer,
    label: String,
    started: Mutex<Option<Instant>>,
}

impl FileBar {
    /// How long since bytes started to move.
    pub fn elapsed(&self) -> Duration {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
}

impl Progress for FileBar {
    fn begin(&self, total: u64, done: u64) {
        if done > 0 && done < total {
            self.printer.note(&format!(
                "{}: resuming at {} of {} ({done} bytes already there)",
                self.label,
                format_size(done),
                format_size(total),
            ));
        }
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.bar.reset_eta();
        if let Some(overall) = &self.overall {
            overall.inc(done);
        }
        if self.printer.show_bars {
            let bar = self.printer.bars.add(self.bar.clone());
            bar.tick();
        }
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if let Some(overall) = &self.overall {
            overall.inc(bytes);
        }
    }

    fn restarting(&self, held: u64) {
        self.printer.note(&format!(
            "{}: the {} already there differ from this file; starting over from 0",
            self.label,
            format_size(held)
        ));
    }

    fn unchecked_prefix(&self, held: u64) {
        self.printer.note(&format!(
            "{}: the {} already there could not be checked against this file (the server \
             offers no hash for it); resuming after them unchecked",
            self.label,
            format_size(held)
        ));
    }

    fn waiting(&self, remote: &str, limit: Duration) {
        self.printer.note(&format!(
            "{}: an upload of {remote} is already in progress; waiting up to {}s for the \
             server to release it",
            self.label,
            limit.as_secs()
        ));
    }
}

impl Drop for FileBar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        self.printer.bars.remove(&self.bar);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn quiet_drops_notes_but_not_output() {
        let sink = Shared::default();
        let printer = Printer::new(Box::new(sink.clone()), true, false);
        printer.note("resuming");
        printer.out("a.txt");
        assert_eq!(
            String::from_utf8(sink.0.lock().unwrap().clone()).unwrap(),
            "a.txt\n"
        );
    }

    #[test]
    fn says_where_a_transfer_resumes() {
        let sink = Shared::default();
        let printer = Printer::new(Box::new(sink.clone()), false, false);
        let bar = printer.file_bar("a.bin", None);
        bar.begin(64 << 20, 32 << 20);
        bar.advance(32 << 20);
        drop(bar);
        let bar = printer.file_bar("b.bin", None);
        bar.begin(10, 0);
        drop(bar);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "a.bin: resuming at 32 MiB of 64 MiB (33554432 bytes already there)\n"
        );
    }

    #[test]
    fn keeps_the_first_write_error() {
        let printer = Printer::new(Box::new(Broken), false, false);
        printer.out("x");
        printer.out("y");
        let err = printer.take_error().expect("an error");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(printer.take_error().is_none());
    }
}
