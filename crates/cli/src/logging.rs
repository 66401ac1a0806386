//! Log setup: JSON lines (one object per line, span fields such as request_id at the
//! top level) or human-readable text, to stdout, stderr or a file.

use std::fs::OpenOptions;
use std::io::Write;

use guard_core::config::{LogConfig, LogFormat, LogOutput};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::Failure;

/// Installs the global subscriber. Writing happens on a background thread so a slow
/// disk or pipe never stalls request handling; keep the guard alive until exit so
/// buffered lines are flushed.
pub(crate) fn init(config: &LogConfig, stdout_allowed: bool) -> Result<WorkerGuard, Failure> {
    let writer: Box<dyn Write + Send> = match &config.output {
        LogOutput::Stdout if stdout_allowed => Box::new(std::io::stdout()),
        LogOutput::Stdout | LogOutput::Stderr => Box::new(std::io::stderr()),
        LogOutput::File(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Failure::Config(format!(
                        "LOG_OUTPUT = {:?}: cannot create {}: {e}",
                        path.display().to_string(),
                        dir.display()
                    ))
                })?;
            }
            let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
                Failure::Config(format!(
                    "LOG_OUTPUT = {:?}: expected a writable file path ({e})",
                    path.display().to_string()
                ))
            })?;
            Box::new(file)
        }
    };
    let (writer, guard) = NonBlockingBuilder::default().lossy(false).finish(writer);
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|e| Failure::Config(format!("LOG_LEVEL = {:?}: {e}", config.level)))?;
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match config.format {
        LogFormat::Json => registry.with(json_layer(writer)).try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false).with_target(true))
            .try_init(),
    };
    installed.map_err(|e| Failure::Runtime(format!("cannot install the logger: {e}")))?;
    Ok(guard)
}

fn json_layer<S>(writer: NonBlocking) -> json_subscriber::JsonLayer<S, NonBlocking>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let mut layer = json_subscriber::JsonLayer::new(writer);
    layer
        .with_timer("timestamp", SystemTime)
        .with_level("level")
        .with_target("target")
        .with_top_level_flattened_span_list()
        .with_flattened_event();
    layer
}

/// Sends panics through the logger (with the request's fields when one was being
/// served) instead of only to stderr.
pub(crate) fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("non-string panic payload");
        tracing::error!(panic = message, location, "panic");
    }));
}
