//! Logging: an `EnvFilter` filter (`RUST_LOG`, when set, wins over the flag) and a format.

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Installs the global subscriber. `filter` is the flag's value; `RUST_LOG` overrides it, and an
/// unreadable filter falls back to `info`.
pub fn init(filter: &str, format: LogFormat, output: Output) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (format, output) {
        (LogFormat::Text, Output::Stdout) => builder.init(),
        (LogFormat::Text, Output::Stderr) => builder.with_writer(std::io::stderr).init(),
        (LogFormat::Json, Output::Stdout) => builder.json().flatten_event(true).init(),
        (LogFormat::Json, Output::Stderr) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .init(),
    }
}
