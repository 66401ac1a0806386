use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn temp_file(contents: &str) -> tempfile_path::TempPath {
    tempfile_path::write(contents)
}

/// A minimal named temporary file, removed on drop, so the core crate needs no
/// test-only dependency.
mod tempfile_path {
    use std::path::{Path, PathBuf};

    pub struct TempPath(PathBuf);
    impl TempPath {
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    pub fn write(contents: &str) -> TempPath {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("guard-config-{}-{n}.toml", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        super::Write::write_all(&mut f, contents.as_bytes()).unwrap();
        TempPath(path)
    }
}

/// Loads from `file` and `pairs` only: no ./guard.toml unless GUARD_CONFIG names one.
fn load(file: Option<&std::path::Path>, pairs: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let env = env(pairs);
    if file.is_none() && !env.contains_key("GUARD_CONFIG") {
        return ConfigLoader::isolated(env).load();
    }
    ConfigLoader::with_env(file.map(Into::into), env).load()
}

#[test]
fn defaults_alone_give_a_working_configuration() {
    let loaded = load(None, &[]).unwrap();
    let c = loaded.config;
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.database.url.expose(), "sqlite://./data/guard.db");
    assert_eq!(c.database.kind(), DatabaseKind::Sqlite);
    assert!(c.redis.url.is_none());
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.output, LogOutput::Stdout);
    assert!(loaded.settings.iter().all(|s| s.source == Source::Default));
}

#[test]
fn file_overrides_defaults_and_environment_overrides_file_and_flags_override_all() {
    let file = temp_file(
        "[server]\nlisten = \"127.0.0.1:9000\"\nshutdown_timeout = 5\n[database]\nmax_open_conns = 4\nmax_idle_conns = 2\n",
    );
    let loaded = load(Some(file.path()), &[("DB_MAX_OPEN_CONNS", "7"), ("LOG_FORMAT", "pretty")]).unwrap();
    let c = &loaded.config;
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(c.database.max_open_conns, 7);
    assert_eq!(c.database.max_idle_conns, 2);
    assert_eq!(c.log.format, LogFormat::Pretty);
    let open = loaded.settings.iter().find(|s| s.key == "database.max_open_conns").unwrap();
    assert_eq!(open.source, Source::Env("DB_MAX_OPEN_CONNS".into()));
    let idle = loaded.settings.iter().find(|s| s.key == "database.max_idle_conns").unwrap();
    assert_eq!(idle.source, Source::File(file.path().to_owned()));

    let flagged = ConfigLoader::with_env(Some(file.path().into()), env(&[("GUARD_LISTEN", "127.0.0.1:9001")]))
        .flag("server.listen", "--listen", "127.0.0.1:9002".into())
        .load()
        .unwrap();
    assert_eq!(flagged.config.server.listen.to_string(), "127.0.0.1:9002");
}

#[test]
fn guard_config_env_names_the_file() {
    let file = temp_file("[log]\nlevel = \"debug\"\n");
    let path = file.path().to_str().unwrap();
    let loaded = load(None, &[("GUARD_CONFIG", path)]).unwrap();
    assert_eq!(loaded.config.log.level, "debug");
    assert_eq!(loaded.file.as_deref(), Some(file.path()));
}

#[test]
fn a_bad_value_names_the_key_the_value_and_what_is_expected() {
    let err = load(None, &[("DB_MAX_OPEN_CONNS", "ten")]).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    let p = &err.problems[0];
    assert!(p.key.contains("DB_MAX_OPEN_CONNS"), "{p}");
    assert_eq!(p.value, "ten");
    assert!(p.expected.contains("integer"), "{p}");
}

#[test]
fn every_bad_value_is_reported_not_just_the_first() {
    let err = load(None, &[("GUARD_LISTEN", "nowhere"), ("LOG_FORMAT", "xml"), ("DB_CONN_MAX_LIFETIME", "forever")])
        .unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.clone()).collect();
    assert_eq!(err.problems.len(), 3, "{keys:?}");
}

#[test]
fn unknown_file_keys_are_rejected_with_the_valid_ones_listed() {
    let file = temp_file("[database]\nmax_conns = 4\n");
    let err = load(Some(file.path()), &[]).unwrap_err();
    let p = &err.problems[0];
    assert!(p.key.starts_with("database.max_conns"), "{p}");
    assert!(p.expected.contains("database.max_open_conns"), "{p}");
}

#[test]
fn a_missing_explicit_file_is_an_error() {
    let err = load(Some(std::path::Path::new("/nonexistent/guard.toml")), &[]).unwrap_err();
    assert!(err.problems[0].value.contains("/nonexistent/guard.toml"));
}

#[test]
fn malformed_toml_is_reported_with_the_file() {
    let file = temp_file("[server\nlisten = 1\n");
    let err = load(Some(file.path()), &[]).unwrap_err();
    assert!(err.problems[0].expected.starts_with("valid TOML"), "{}", err);
}

#[test]
fn idle_connections_cannot_exceed_open_connections() {
    let err = load(None, &[("DB_MAX_OPEN_CONNS", "2"), ("DB_MAX_IDLE_CONNS", "5")]).unwrap_err();
    assert!(err.problems[0].key.contains("DB_MAX_IDLE_CONNS"));
}

#[test]
fn idle_connections_follow_open_connections_unless_set() {
    let few = load(None, &[("DB_MAX_OPEN_CONNS", "3")]).unwrap().config.database;
    assert_eq!((few.max_open_conns, few.max_idle_conns), (3, 3));
    let set = load(None, &[("DB_MAX_OPEN_CONNS", "30"), ("DB_MAX_IDLE_CONNS", "4")]).unwrap().config.database;
    assert_eq!((set.max_open_conns, set.max_idle_conns), (30, 4));
    let default = load(None, &[]).unwrap().config.database;
    assert_eq!((default.max_open_conns, default.max_idle_conns), (10, 10));
}

#[test]
fn urls_the_drivers_could_not_use_are_configuration_errors() {
    for (key, bad) in [
        ("DATABASE_URL", "postgres://guard:pw@db:notaport/guard"),
        ("DATABASE_URL", "postgres:///no-host"),
        ("DATABASE_URL", "mysql://db/guard"),
        ("REDIS_URL", "redis://cache:port/0"),
        ("REDIS_URL", "http://cache"),
    ] {
        let err = load(None, &[(key, bad)]).unwrap_err();
        assert!(err.problems[0].key.contains(key), "{bad}: {err}");
        assert!(!err.to_string().contains(":pw@"), "{err}");
    }
    assert!(load(None, &[("REDIS_URL", "rediss://:pw@cache:6380/1"), ("DATABASE_URL", "sqlite:guard.db")]).is_ok());
}

#[test]
fn values_of_unknown_or_misplaced_keys_are_not_echoed() {
    let file = temp_file(
        "database_url = \"postgres://u:hunter2@db/guard\"\n[database]\nuri = \"postgres://u:hunter2@db/guard\"\n",
    );
    let err = load(Some(file.path()), &[]).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn secrets_are_redacted_in_the_effective_settings_and_errors() {
    let loaded = load(
        None,
        &[("DATABASE_URL", "postgres://guard:hunter2@db/guard"), ("REDIS_URL", "redis://:hunter3@cache:6379")],
    )
    .unwrap();
    for s in &loaded.settings {
        let v = s.value.clone().unwrap_or_default();
        assert!(!v.contains("hunter2") && !v.contains("hunter3"), "{} leaked: {v}", s.key);
    }
    let err = load(None, &[("DATABASE_URL", "mysql://root:hunter2@db/guard")]).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn secrets_can_be_read_from_files_but_not_set_twice() {
    let file = temp_file("postgres://guard:pw@db/guard\n");
    let path = file.path().to_str().unwrap();
    let loaded = load(None, &[("DATABASE_URL_FILE", path)]).unwrap();
    assert_eq!(loaded.config.database.url.expose(), "postgres://guard:pw@db/guard");
    assert_eq!(loaded.config.database.kind(), DatabaseKind::Postgres);
    let err = load(None, &[("DATABASE_URL_FILE", path), ("DATABASE_URL", "sqlite://x.db")]).unwrap_err();
    assert!(err.problems[0].key.contains("DATABASE_URL_FILE"));
}

#[test]
fn log_output_and_level_are_checked() {
    let loaded = load(None, &[("LOG_OUTPUT", "/var/log/guard.log"), ("LOG_LEVEL", "info,guard=debug")]).unwrap();
    assert_eq!(loaded.config.log.output, LogOutput::File("/var/log/guard.log".into()));
    let err = load(None, &[("LOG_LEVEL", "loud=[")]).unwrap_err();
    assert!(err.problems[0].key.contains("LOG_LEVEL"));
}

#[test]
fn every_setting_has_a_distinct_key_and_environment_name() {
    let mut keys = std::collections::HashSet::new();
    let mut envs = std::collections::HashSet::new();
    for s in spec::SETTINGS {
        assert!(keys.insert(s.key), "duplicate key {}", s.key);
        assert!(envs.insert(s.env), "duplicate env {}", s.env);
        if let Some(d) = s.default {
            assert!(load(None, &[(s.env, d)]).is_ok(), "default of {} does not parse", s.key);
        }
    }
}
