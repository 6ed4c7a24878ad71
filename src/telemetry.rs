//! Logging: `tracing` with a text or JSON formatter, level from `RUST_LOG` (default `info`); and the
//! metrics registry every module registers its metrics on.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a file, a pipe or a log collector gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The metrics registry `/metrics` exposes: every module registers its own metrics on it, each named
/// `pullgate_*`.
pub fn metrics_registry() -> prometheus_client::registry::Registry {
    prometheus_client::registry::Registry::with_prefix("pullgate")
}
