//! JSON logs from the real binary.

use guard_testkit::GuardCommand;
use serde_json::Value;

use crate::support::GUARD;

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_fields() {
    let guard = GuardCommand::new(GUARD).env("LOG_FORMAT", "json").env("LOG_OUTPUT", "logs/guard.log");
    let mut server = guard.serve(&[]).await;
    let client = reqwest::Client::new();
    let ok = client.get(format!("{}/health", server.base)).header("x-request-id", "log-test-1").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let missing =
        client.get(format!("{}/nowhere", server.base)).header("x-request-id", "log-test-2").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(server.terminate().success(), "SIGTERM is a clean exit");

    let text = std::fs::read_to_string(guard.dir().join("logs/guard.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
    }
    let completed = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id && l["message"] == "request completed")
            .unwrap_or_else(|| panic!("no completion line for {id} in:\n{text}"))
            .clone()
    };
    let first = completed("log-test-1");
    assert_eq!(first["route"], "/health");
    assert_eq!(first["status"], 200);
    assert_eq!(first["method"], "GET");
    assert_eq!(first["level"], "INFO");
    assert!(first["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{first}");
    let second = completed("log-test-2");
    assert_eq!(second["route"], "unmatched");
    assert_eq!(second["status"], 404);
    assert!(lines.iter().any(|l| l["message"] == "guard is ready"), "{text}");
    assert!(lines.iter().any(|l| l["message"] == "guard stopped"), "{text}");
}

#[tokio::test]
async fn pretty_logs_go_to_stderr_when_asked() {
    let guard = GuardCommand::new(GUARD).env("LOG_FORMAT", "pretty").env("LOG_OUTPUT", "stderr");
    let mut server = guard.serve(&[]).await;
    reqwest::get(format!("{}/health", server.base)).await.unwrap();
    assert!(server.terminate().success());
    let stderr = server.stderr();
    assert!(stderr.contains("guard is ready"), "{stderr}");
    assert!(stderr.contains("request completed"), "{stderr}");
    assert!(server.stdout().is_empty(), "nothing on stdout: {}", server.stdout());
}

/// Collects formatted log lines in memory.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

struct CaptureLine(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = CaptureLine;
    fn make_writer(&'a self) -> CaptureLine {
        CaptureLine(self.0.clone())
    }
}

// A current-thread runtime: the server's tasks run on this thread, so the subscriber
// set here for this thread sees what the server logs.
#[tokio::test(flavor = "current_thread")]
async fn a_handler_panic_is_logged_with_its_request_id() {
    use tracing_subscriber::layer::SubscriberExt;

    let capture = Capture::default();
    let mut layer = json_subscriber::JsonLayer::new(capture.clone());
    layer.with_level("level").with_top_level_flattened_span_list().with_flattened_event();
    let _logging = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let Some(app) = guard_testkit::TestApp::builder(guard_testkit::Backend::Sqlite)
        .routes(crate::support::test_routes())
        .spawn()
        .await
    else {
        return;
    };
    let response = app.http.get(app.url("/test/panic")).header("x-request-id", "panic-log-1").send().await.unwrap();
    assert_eq!(response.status(), 500);

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let panicked = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "handler panicked")
        .unwrap_or_else(|| panic!("no panic line in:\n{text}"));
    assert_eq!(panicked["request_id"], "panic-log-1", "{panicked}");
    assert_eq!(panicked["level"], "ERROR");
    assert!(panicked["panic"].as_str().unwrap().contains("index out of bounds"), "{panicked}");
}
