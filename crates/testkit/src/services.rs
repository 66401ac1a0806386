//! Finding PostgreSQL and Redis, and deciding whether their absence skips or fails.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use sqlx::Connection;

/// True when tests must not skip for want of PostgreSQL or Redis.
pub fn services_required() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("GUARD_TEST_REQUIRE_SERVICES") || set("CI")
}

pub(crate) fn unavailable(what: &str, why: String) {
    assert!(!services_required(), "{what} is required here (CI or GUARD_TEST_REQUIRE_SERVICES) but unreachable: {why}");
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let message = format!("SKIP {test}: {what} unreachable ({why}); start it or set its GUARD_TEST_* URL");
    eprintln!("{message}");
    // Test runners capture the output of passing tests; the terminal, when there is
    // one, still shows that a test did not really run.
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        let _ = writeln!(tty, "{message}");
    }
}

/// Server URL with rights to create databases.
pub fn postgres_admin_url() -> String {
    std::env::var("GUARD_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis URL for tests, or `None` (after printing why) when Redis is unreachable
/// and not required.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("GUARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    match redis_ping(&url) {
        Ok(()) => Some(url),
        Err(why) => {
            unavailable("Redis", why);
            None
        }
    }
}

fn redis_ping(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let port = parsed.port().unwrap_or(6379);
    let addr = (host, port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).map_err(|e| e.to_string())?;
    if reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH") {
        Ok(())
    } else {
        Err(format!("unexpected reply {:?}", String::from_utf8_lossy(&reply[..n])))
    }
}

/// A PostgreSQL database created for one test and dropped (with any connections
/// still open to it) when this value is dropped.
#[derive(Debug)]
pub struct PostgresDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl PostgresDatabase {
    /// Creates a fresh database, or returns `None` (after printing why) when
    /// PostgreSQL is unreachable and not required.
    pub async fn create() -> Option<PostgresDatabase> {
        let admin_url = postgres_admin_url();
        let connect = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin_url)).await;
        let mut admin = match connect {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                unavailable("PostgreSQL", e.to_string());
                return None;
            }
            Err(_) => {
                unavailable("PostgreSQL", "connect timed out".into());
                return None;
            }
        };
        let name = format!("guard_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
        admin.close().await.ok();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        Some(PostgresDatabase { url: url.to_string(), name, admin_url })
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a runtime, which cannot block on another: use a thread.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
