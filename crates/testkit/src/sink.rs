//! A receiving server written in Python (a real implementation of the protocol, not
//! guard's), run as a separate process that keeps what it receives as JSON lines.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running sink script; killed when dropped.
pub(crate) struct ScriptSink {
    child: Child,
    pub(crate) port: u16,
    received: PathBuf,
    _dir: tempfile::TempDir,
}

impl ScriptSink {
    /// Starts `scripts/<script>` on a free port. `None`: Python or the script's library
    /// (`what`) is missing here (a failure when services are required).
    pub(crate) fn start(script: &str, what: &str) -> Option<ScriptSink> {
        let dir = tempfile::tempdir().expect("temp dir");
        let received = dir.path().join("received.jsonl");
        let path = format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR"));
        let spawned = Command::new("python3")
            .arg(path)
            .arg(&received)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                crate::services::unavailable(what, e.to_string());
                return None;
            }
        };
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        let Some(port) = read.ok().and_then(|_| line.trim().parse().ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            crate::services::unavailable(what, "it did not start".into());
            return None;
        };
        Some(ScriptSink { child, port, received, _dir: dir })
    }

    /// Everything received so far, one JSON value each.
    pub(crate) fn received(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.received).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Drop for ScriptSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
