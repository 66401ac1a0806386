//! A syslog collector over TCP (RFC 6587 octet counting) that parses each message with
//! an independent RFC 5424 parser (Python's syslog-rfc5424-parser).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sink::ScriptSink;

/// A running syslog collector; killed when dropped.
pub struct SyslogSink(ScriptSink);

impl SyslogSink {
    /// Starts the collector on a free port. `None`: Python or the parser is missing.
    pub fn start() -> Option<SyslogSink> {
        ScriptSink::start("syslog_sink.py", "the syslog collector (python3 with syslog-rfc5424-parser)").map(SyslogSink)
    }

    /// The URL guard delivers to (AUDIT_DELIVERY_URL).
    pub fn url(&self) -> String {
        format!("syslog+tcp://127.0.0.1:{}", self.0.port)
    }

    /// Every message so far, as the parser read it (severity, facility, appname,
    /// msgid, msg…), or `{"error": …}` for one it refused.
    pub fn messages(&self) -> Vec<Value> {
        self.0.received()
    }

    /// Waits up to `timeout` for at least `count` messages.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(Instant::now() < deadline, "{} of {count} syslog messages arrived", messages.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
