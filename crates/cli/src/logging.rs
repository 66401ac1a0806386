//! Log setup: JSON lines (one object per line, span fields such as request_id at the
//! top level) or human-readable text, to stdout, stderr or a file.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use guard_core::config::{LogConfig, LogFormat, LogOutput};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::Failure;

/// Installs the global subscriber. Keep the returned guard alive until exit: dropping
/// it flushes the lines still buffered.
pub(crate) fn init(config: &LogConfig, stdout_allowed: bool) -> Result<FlushGuard, Failure> {
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
    let writer = BatchWriter::new(writer);
    let guard = writer.start_flushing();
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

fn json_layer<S>(writer: BatchWriter) -> json_subscriber::JsonLayer<S, BatchWriter>
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

/// Log lines are appended to an in-memory buffer by the thread that logs them and
/// written out by a flusher thread every [`FLUSH_EVERY`]. A request costs a lock and a
/// copy, never a system call or a cross-thread wake-up, and never waits for the output:
/// when the output falls so far behind that [`MAX_PENDING`] bytes are waiting, further
/// lines are dropped and counted, and the count is reported on stderr.
#[derive(Clone)]
pub(crate) struct BatchWriter {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    output: Mutex<Box<dyn Write + Send>>,
    dropped: AtomicU64,
}

const FLUSH_EVERY: Duration = Duration::from_millis(100);
const MAX_PENDING: usize = 16 << 20;

impl BatchWriter {
    fn new(output: Box<dyn Write + Send>) -> BatchWriter {
        BatchWriter {
            shared: Arc::new(Shared {
                pending: Mutex::new(Vec::with_capacity(64 << 10)),
                output: Mutex::new(output),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    fn start_flushing(&self) -> FlushGuard {
        let shared = Arc::downgrade(&self.shared);
        let _ = std::thread::Builder::new().name("guard-log-flush".into()).spawn(move || {
            while let Some(shared) = shared.upgrade() {
                shared.flush();
                drop(shared);
                std::thread::sleep(FLUSH_EVERY);
            }
        });
        FlushGuard { writer: self.clone() }
    }
}

impl Shared {
    /// Writes out what is pending; only the flusher (and the exit guard) waits on the
    /// output.
    fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        if !batch.is_empty() {
            let _ = output.write_all(&batch);
        }
        let _ = output.flush();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            eprintln!("guard: {dropped} log lines dropped: the log output is not keeping up");
        }
    }
}

/// Appends to the pending buffer. Both log formats render an event into a buffer of
/// their own and hand it over in one `write`, so lines arrive whole.
pub(crate) struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() + buf.len() > MAX_PENDING {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            pending.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { shared: &self.shared }
    }
}

/// Writes out the lines still pending when dropped (at exit).
pub(crate) struct FlushGuard {
    writer: BatchWriter,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.writer.shared.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_output_only_when_flushed_and_whole() {
        let sink = Sink::default();
        let writer = BatchWriter::new(Box::new(sink.clone()));
        writer.make_writer().write_all(b"{\"a\":1}\n").unwrap();
        writer.make_writer().write_all(b"{\"b\":2}\n").unwrap();
        assert!(sink.0.lock().unwrap().is_empty(), "nothing is written on the logging thread");
        writer.shared.flush();
        assert_eq!(&*sink.0.lock().unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn a_stalled_output_drops_lines_instead_of_growing_without_bound() {
        let writer = BatchWriter::new(Box::new(Sink::default()));
        let line = vec![b'x'; 1 << 20];
        for _ in 0..20 {
            writer.make_writer().write_all(&line).unwrap();
        }
        assert!(writer.shared.pending.lock().unwrap().len() <= MAX_PENDING);
        assert_eq!(writer.shared.dropped.load(Ordering::Relaxed), 20 - (MAX_PENDING >> 20) as u64);
    }

    #[test]
    fn the_exit_guard_flushes_what_is_pending() {
        let sink = Sink::default();
        let writer = BatchWriter::new(Box::new(sink.clone()));
        let guard = FlushGuard { writer: writer.clone() };
        writer.make_writer().write_all(b"last words\n").unwrap();
        drop(guard);
        assert_eq!(&*sink.0.lock().unwrap(), b"last words\n");
    }
}
