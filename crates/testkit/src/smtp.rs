//! A real SMTP server as a mail sink: aiosmtpd (Python) run as a separate process,
//! keeping every message it receives as a decoded JSON line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running SMTP sink; killed when dropped.
pub struct SmtpSink {
    child: Child,
    port: u16,
    messages: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts the sink on a free port. `None`: Python or aiosmtpd is missing here (a
    /// failure when services are required).
    pub fn start() -> Option<SmtpSink> {
        let dir = tempfile::tempdir().expect("temp dir");
        let messages = dir.path().join("messages.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/smtp_sink.py");
        let spawned = Command::new("python3")
            .arg(script)
            .arg(&messages)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                crate::services::unavailable("the SMTP sink (python3 with aiosmtpd)", e.to_string());
                return None;
            }
        };
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        let Some(port) = read.ok().and_then(|_| line.trim().parse().ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            crate::services::unavailable("the SMTP sink (python3 with aiosmtpd)", "it did not start".into());
            return None;
        };
        Some(SmtpSink { child, port, messages, _dir: dir })
    }

    /// The URL guard sends to (SMTP_URL).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far: objects with from, to, subject, text, html.
    pub fn messages(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.messages).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The first message to `recipient` whose subject contains `subject`, waiting up
    /// to `timeout` for it.
    pub async fn wait_for(&self, recipient: &str, subject: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.messages().into_iter().find(|m| {
                m["to"].as_array().is_some_and(|to| to.iter().any(|t| t == recipient))
                    && m["subject"].as_str().is_some_and(|s| s.contains(subject))
            });
            if let Some(message) = found {
                return message;
            }
            assert!(Instant::now() < deadline, "no email to {recipient} about {subject:?}: {:?}", self.messages());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The first `http(s)://…` link in `text`.
pub fn first_link(text: &str) -> Option<String> {
    let start = text.find("http://").or_else(|| text.find("https://"))?;
    let link: String = text[start..].chars().take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<').collect();
    Some(link)
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
