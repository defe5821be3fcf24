//! The one tracing setup of the process.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global tracing subscriber, writing to stderr.
///
/// `RUST_LOG` wins over `default_filter`, which wins over the configured
/// `log.filter`. Calling it twice is harmless: the second call does nothing,
/// which lets tests start several daemons in one process.
pub fn init(settings: &LogSettings, default_filter: Option<&str>) {
    let directive = default_filter.unwrap_or(&settings.filter);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directive))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let colors = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colors);
    let _already_set = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
