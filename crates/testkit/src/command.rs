//! Running the `guard` binary itself, with a clean environment and its own working
//! directory, for the CLI and for behaviour only a real process shows (signals, logs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `guard` invocation: no inherited configuration, a temporary working directory.
pub struct GuardCommand {
    binary: PathBuf,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl GuardCommand {
    /// `binary` is the path of the built `guard` (`env!("CARGO_BIN_EXE_guard")`).
    /// Rate limits and brute-force protection are off (tests sign in far more often,
    /// and fail more often, than a person); a test of them turns them on, which comes
    /// later and wins.
    pub fn new(binary: &str) -> GuardCommand {
        let env = [("RATE_LIMIT_ENABLED", "false"), ("BRUTE_FORCE_PROTECTION", "false")];
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        GuardCommand { binary: binary.into(), dir: tempfile::tempdir().expect("temp dir"), env }
    }

    /// Sets an environment variable for every run.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> GuardCommand {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// The working directory the binary runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args).current_dir(self.dir.path()).env_clear();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run guard")
    }

    /// Runs to completion with `input` on standard input.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn guard");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("output")
    }

    /// Runs to completion, killing the process if it takes longer than `limit` (so a
    /// command expected to fail cannot hang the test run by succeeding).
    pub fn run_for(&self, args: &[&str], limit: Duration) -> Output {
        let mut child = self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn guard");
        let started = Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if started.elapsed() > limit {
                let _ = child.kill();
                let output = child.wait_with_output().expect("output");
                panic!(
                    "guard {args:?} still running after {limit:?}; stderr: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    }

    /// Starts `guard serve` on a free port and waits until /health answers.
    pub async fn serve(&self, extra_args: &[&str]) -> GuardProcess {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", listen.as_str()];
        args.extend_from_slice(extra_args);
        let stdout = std::fs::File::create(self.dir.path().join("stdout.log")).expect("stdout file");
        let stderr = std::fs::File::create(self.dir.path().join("stderr.log")).expect("stderr file");
        let child = self.command(&args).stdout(stdout).stderr(stderr).spawn().expect("spawn guard serve");
        let process = GuardProcess { child, base: format!("http://{listen}"), dir: self.dir.path().to_owned() };
        process.wait_ready(Duration::from_secs(20)).await;
        process
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A running `guard serve`.
pub struct GuardProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    dir: PathBuf,
}

impl GuardProcess {
    async fn wait_ready(&self, limit: Duration) {
        let started = Instant::now();
        let client = reqwest::Client::new();
        while started.elapsed() < limit {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("guard serve did not answer /health within {limit:?}; stderr: {}", self.stderr());
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM")
    }

    /// Sends the signal named `name` (`TERM`, `INT`) and waits for the exit status.
    pub fn signal(&mut self, name: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("kill");
        assert!(sent.success(), "kill -{name} {pid} failed");
        self.child.wait().expect("wait")
    }

    /// What the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for GuardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
