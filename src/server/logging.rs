//! Structured logs: to the console, and to files under the logs folder that rotate by
//! day and by size ([`logfile`](super::logfile)).
//!
//! Lines are `key=value` text, one event per line, so they read well and `grep` and
//! fail2ban match them. `RUST_LOG` overrides the level (default `info`). Both copies get
//! the same events: what keeps their volume down (metadata reads counted, not logged one
//! by one) happens where the events are made, in [`oplog`](super::oplog).

use std::io::IsTerminal;
use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;

use super::logfile::RotatingFile;
pub use super::logfile::Rotation;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Starts logging. Keep the returned guard alive: dropping it flushes the file.
pub fn init(logs_dir: Option<&Path>, rotation: Rotation) -> std::io::Result<Option<WorkerGuard>> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not for journald or a redirect.
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter());
    let Some(dir) = logs_dir else {
        tracing_subscriber::registry().with(console).try_init().ok();
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    let appender = RotatingFile::new(dir, "rsftpd.log", rotation);
    // Lossy: when the disk cannot keep up, lines are dropped rather than the server
    // waiting for it.
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let file = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .fmt_fields(FileFields::default())
        .with_filter(filter());
    tracing_subscriber::registry()
        .with(console)
        .with(file)
        .try_init()
        .ok();
    Ok(Some(guard))
}

/// The file's field formatter. A span's fields are formatted once per formatter type and
/// shared by the layers that use it, so with the console's type the file's lines would
/// carry the console's colour codes.
#[derive(Default)]
struct FileFields(DefaultFields);

impl<'writer> FormatFields<'writer> for FileFields {
    fn format_fields<R: RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

/// Peer-controlled text made safe for one log line: control characters escaped, length
/// capped, so a user name can neither forge log lines nor flood them.
pub struct LogText<'a>(pub &'a str);

impl std::fmt::Display for LogText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == 64 {
                return f.write_str("...");
            }
            if c.is_control() || c == ' ' || c == '"' || c == '\\' {
                // Spaces, quotes and backslashes too, so a name cannot fake a field.
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::LogText;

    #[test]
    fn log_text_cannot_forge_lines_or_fields() {
        assert_eq!(LogText("alice").to_string(), "alice");
        assert_eq!(
            LogText("a b\nresult=\"ok\"\\").to_string(),
            "a\\u{20}b\\u{a}result=\\u{22}ok\\u{22}\\u{5c}"
        );
        assert_eq!(
            LogText(&"x".repeat(100)).to_string(),
            format!("{}...", "x".repeat(64))
        );
    }
}
