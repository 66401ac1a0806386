//! `guard config check` and configuration errors, through the real binary.

use std::time::Duration;

use guard_testkit::GuardCommand;
use serde_json::Value;

use crate::support::GUARD;

#[test]
fn config_check_prints_every_effective_setting_with_its_source_and_secrets_redacted() {
    let guard = GuardCommand::new(GUARD)
        .env("DATABASE_URL", "postgres://guard:hunter2@db.internal:5432/guard")
        .env("REDIS_URL", "redis://:hunter3@cache:6379/0")
        .env("DB_MAX_OPEN_CONNS", "25");
    std::fs::write(
        guard.dir().join("guard.toml"),
        "[server]\nlisten = \"127.0.0.1:9999\"\n[log]\nformat = \"pretty\"\n",
    )
    .unwrap();
    let output = guard.run(&["config", "check"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("configuration is valid (file: guard.toml)"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stdout.contains("hunter3"), "secret leaked:\n{stdout}");
    assert!(stdout.contains("postgres://guard:***@db.internal:5432/guard"), "{stdout}");
    let row =
        |key: &str| stdout.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} missing")).to_owned();
    assert!(row("server.listen").contains("127.0.0.1:9999") && row("server.listen").ends_with("file guard.toml"));
    assert!(row("database.max_open_conns").ends_with("env DB_MAX_OPEN_CONNS"));
    assert!(row("server.shutdown_timeout").ends_with("default"));

    let json = guard.run(&["config", "check", "--format", "json"]);
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert!(doc["settings"].as_array().unwrap().iter().any(|s| s["key"] == "log.format" && s["value"] == "pretty"));
}

#[test]
fn bad_configuration_exits_2_naming_the_key_the_value_and_what_is_expected() {
    let guard = GuardCommand::new(GUARD).env("DB_MAX_OPEN_CONNS", "ten");
    for args in [&["config", "check"][..], &["serve"], &["migrate", "status"]] {
        let output = guard.run_for(args, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("DB_MAX_OPEN_CONNS"), "{stderr}");
        assert!(stderr.contains("\"ten\""), "{stderr}");
        assert!(stderr.contains("expected an integer from 1 to 1000"), "{stderr}");
    }
}

#[test]
fn sqlite_synchronous_off_or_unknown_is_refused_at_start() {
    for value in ["off", "sometimes", "2"] {
        let guard = GuardCommand::new(GUARD).env("SQLITE_SYNCHRONOUS", value);
        for args in [&["config", "check"][..], &["serve"]] {
            let output = guard.run_for(args, Duration::from_secs(20));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "SQLITE_SYNCHRONOUS={value} {args:?}: {stderr}");
            assert!(stderr.contains("SQLITE_SYNCHRONOUS"), "{stderr}");
            assert!(stderr.contains(&format!("\"{value}\"")), "{stderr}");
            assert!(stderr.contains("expected full, extra or normal"), "{stderr}");
        }
    }
    let guard = GuardCommand::new(GUARD).env("SQLITE_SYNCHRONOUS", "normal");
    let output = guard.run(&["config", "check"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let row = stdout.lines().find(|l| l.starts_with("database.sqlite_synchronous")).unwrap_or_default();
    assert!(row.contains("normal") && row.ends_with("env SQLITE_SYNCHRONOUS"), "{stdout}");
}

#[test]
fn an_unknown_key_in_guard_toml_exits_2_listing_the_valid_keys() {
    let guard = GuardCommand::new(GUARD);
    std::fs::write(guard.dir().join("guard.toml"), "[database]\nmax_connections = 5\n").unwrap();
    let output = guard.run(&["config", "check"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("database.max_connections in guard.toml"), "{stderr}");
    assert!(stderr.contains("database.max_open_conns"), "{stderr}");
}

#[test]
fn a_config_file_named_by_flag_must_exist() {
    let guard = GuardCommand::new(GUARD);
    let output = guard.run(&["--config", "missing.toml", "config", "check"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml"));
    let via_env = GuardCommand::new(GUARD).env("GUARD_CONFIG", "also-missing.toml").run(&["config", "check"]);
    assert_eq!(via_env.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&via_env.stderr).contains("also-missing.toml"));
}

#[test]
fn environment_overrides_the_file() {
    let guard = GuardCommand::new(GUARD).env("GUARD_LISTEN", "127.0.0.1:7001");
    std::fs::write(guard.dir().join("guard.toml"), "[server]\nlisten = \"127.0.0.1:7000\"\n").unwrap();
    let output = guard.run(&["config", "check"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let listen = stdout.lines().find(|l| l.starts_with("server.listen")).unwrap();
    assert!(listen.contains("127.0.0.1:7001") && listen.ends_with("env GUARD_LISTEN"), "{listen}");
}

#[test]
fn without_a_file_the_defaults_and_environment_apply() {
    let output = GuardCommand::new(GUARD).run(&["config", "check"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("configuration is valid (no configuration file)"), "{stdout}");
    let idle = stdout.lines().find(|l| l.starts_with("database.max_idle_conns")).unwrap();
    assert!(idle.contains("(unset)"), "{idle}");
}

#[tokio::test]
async fn serve_on_a_fresh_directory_creates_the_sqlite_database_and_stops_on_sigint() {
    // GUARD_LISTEN names a port nobody can bind; `serve` passes --listen, which must win.
    let guard = GuardCommand::new(GUARD).env("GUARD_LISTEN", "127.0.0.1:1");
    let mut server = guard.serve(&[]).await;
    assert!(guard.dir().join("data/guard.db").exists(), "default sqlite://./data/guard.db is created");
    let health: Value = reqwest::get(format!("{}/health", server.base)).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert!(server.signal("INT").success());
    assert!(server.stdout().contains("\"signal\":\"SIGINT\""), "{}", server.stdout());
}

#[test]
fn a_redis_url_the_driver_cannot_use_exits_2_without_its_password() {
    let guard = GuardCommand::new(GUARD).env("REDIS_URL", "redis://:hunter2@cache:notaport");
    let output = guard.run_for(&["serve", "--listen", "127.0.0.1:0"], std::time::Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("REDIS_URL") && !stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn the_readme_configuration_reference_is_the_one_guard_prints() {
    let output = GuardCommand::new(GUARD).run(&["config", "reference"]);
    assert!(output.status.success());
    let reference = String::from_utf8(output.stdout).unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    assert!(
        readme.contains(&reference),
        "README.md's configuration table is out of date; replace it with `guard config reference`:\n{reference}"
    );
}
