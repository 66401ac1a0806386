//! A software WebAuthn authenticator from outside guard: Python's soft-webauthn, run
//! by scripts/soft_authenticator.py, with its one credential kept in a file between
//! ceremonies.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// One authenticator device holding (at most) one credential.
pub struct SoftAuthenticator {
    device: PathBuf,
    _dir: tempfile::TempDir,
}

impl Default for SoftAuthenticator {
    fn default() -> SoftAuthenticator {
        SoftAuthenticator::new()
    }
}

impl SoftAuthenticator {
    /// A device with no credential yet.
    pub fn new() -> SoftAuthenticator {
        let dir = tempfile::tempdir().expect("temp dir");
        SoftAuthenticator { device: dir.path().join("device.json"), _dir: dir }
    }

    fn run(&self, action: &str, options: &Value, origin: &str) -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/soft_authenticator.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&self.device)
            .args([action, origin])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child.stdin.take().expect("stdin").write_all(options.to_string().as_bytes()).expect("options written");
        let out = child.wait_with_output().expect("authenticator finishes");
        assert!(
            out.status.success(),
            "soft authenticator {action} (pip install soft-webauthn): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("credential JSON")
    }

    /// `navigator.credentials.create()`: a new credential for `options` (the
    /// `{"publicKey": …}` creation options), as the page at `origin` would get it.
    pub fn create(&self, options: &Value, origin: &str) -> Value {
        self.run("create", options, origin)
    }

    /// `navigator.credentials.get()`: an assertion of the device's credential.
    pub fn get(&self, options: &Value, origin: &str) -> Value {
        self.run("get", options, origin)
    }
}
