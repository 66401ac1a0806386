//! A real SMTP server as a mail sink: aiosmtpd (Python) run as a separate process,
//! keeping every message it receives as a decoded JSON line.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sink::ScriptSink;

/// A running SMTP sink; killed when dropped.
pub struct SmtpSink(ScriptSink);

impl SmtpSink {
    /// Starts the sink on a free port. `None`: Python or aiosmtpd is missing here (a
    /// failure when services are required).
    pub fn start() -> Option<SmtpSink> {
        ScriptSink::start("smtp_sink.py", "the SMTP sink (python3 with aiosmtpd)").map(SmtpSink)
    }

    /// The URL guard sends to (SMTP_URL).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.0.port)
    }

    /// Every message received so far: objects with from, to, subject, text, html.
    pub fn messages(&self) -> Vec<Value> {
        self.0.received()
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
