//! The scenarios: what each request is, and the set-up it needs (a session, a tenant's
//! policies, a refresh-token family per connection).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::load::Connection;

/// The scenarios guard-bench drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `GET /health`: the server and its middleware, no dependency.
    Health,
    /// `GET /health/db`: one `SELECT 1` through the pool.
    HealthDb,
    /// `POST /v1/auth/password/login`: a password sign-in (Argon2id-bound).
    Login,
    /// `GET /v1/me` with a session token.
    Me,
    /// `POST /v1/auth/token/refresh`: each connection rotates its own token family.
    Refresh,
    /// `POST /v1/authorize`: one decision, rotating over the tenant's requests.
    Authorize,
    /// `POST /v1/authorize/batch`: the tenant's batch of requests.
    AuthorizeBatch,
    /// `GET /v1/audit?limit=100`: the first page of the tenant's audit log, newest first.
    AuditQuery,
}

impl Scenario {
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Health => "GET /health",
            Scenario::HealthDb => "GET /health/db",
            Scenario::Login => "POST /v1/auth/password/login",
            Scenario::Me => "GET /v1/me (session token)",
            Scenario::Refresh => "POST /v1/auth/token/refresh",
            Scenario::Authorize => "POST /v1/authorize",
            Scenario::AuthorizeBatch => "POST /v1/authorize/batch",
            Scenario::AuditQuery => "GET /v1/audit?limit=100",
        }
    }
}

/// Who signs in, and where.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub tenant: String,
    pub email: String,
    pub password: String,
    /// For the authorization scenarios: `policies.json`, `entities.json`,
    /// `requests.json` and `batch.json`, as the `authz_bench` example writes them.
    pub tenant_dir: Option<PathBuf>,
}

/// Everything a scenario's requests share, made once before the load.
pub struct Prepared {
    scenario: Scenario,
    target: Target,
    session: String,
    bodies: Vec<Bytes>,
}

/// What one connection keeps between its requests.
pub struct WorkerState {
    sent: usize,
    refresh_token: String,
}

impl Prepared {
    /// Signs in where the scenario needs a session and loads the tenant's policies for
    /// the authorization scenarios.
    pub async fn new(scenario: Scenario, target: Target) -> Result<Prepared, String> {
        let needs_session =
            matches!(scenario, Scenario::Me | Scenario::Authorize | Scenario::AuthorizeBatch | Scenario::AuditQuery);
        let session = if needs_session { sign_in(&target).await?.0 } else { String::new() };
        let mut prepared = Prepared { scenario, target, session, bodies: Vec::new() };
        match scenario {
            Scenario::Login => prepared.bodies.push(prepared.login_body()),
            Scenario::Authorize | Scenario::AuthorizeBatch => {
                let dir = prepared.target.tenant_dir.clone().ok_or(
                    "--tenant-dir is needed for the authorization scenarios (written by the authz_bench example)",
                )?;
                prepared.load_tenant(&dir).await?;
                prepared.bodies = if scenario == Scenario::Authorize {
                    let requests: Vec<Value> = serde_json::from_slice(&read(&dir.join("requests.json"))?)
                        .map_err(|e| format!("requests.json: {e}"))?;
                    requests.iter().map(|r| Bytes::from(r.to_string())).collect()
                } else {
                    vec![Bytes::from(read(&dir.join("batch.json"))?)]
                };
                if prepared.bodies.is_empty() {
                    return Err("requests.json holds no request".into());
                }
            }
            _ => {}
        }
        Ok(prepared)
    }

    fn login_body(&self) -> Bytes {
        Bytes::from(json!({ "email": self.target.email, "password": self.target.password }).to_string())
    }

    async fn load_tenant(&self, dir: &Path) -> Result<(), String> {
        for (path, file) in [("/v1/policies", "policies.json"), ("/v1/entities", "entities.json")] {
            let body = Bytes::from(read(&dir.join(file))?);
            let request = self.base(Method::PUT, path).header("content-type", "application/json");
            let (status, answer) =
                call(self.target.addr, request.body(Full::new(body)).map_err(|e| e.to_string())?).await?;
            if !status.is_success() {
                return Err(format!("PUT {path}: {status}: {}", String::from_utf8_lossy(&answer)));
            }
        }
        Ok(())
    }

    /// A connection's own state: for refresh, a token family of its own.
    pub async fn worker(&self, _index: usize) -> Result<WorkerState, String> {
        let refresh_token =
            if self.scenario == Scenario::Refresh { sign_in(&self.target).await?.1 } else { String::new() };
        Ok(WorkerState { sent: 0, refresh_token })
    }

    fn base(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.target.host)
            .header("x-tenant-id", &self.target.tenant);
        if self.session.is_empty() {
            builder
        } else {
            builder.header("authorization", format!("Bearer {}", self.session))
        }
    }

    /// The connection's next request.
    pub fn request(&self, state: &mut WorkerState) -> Request<Full<Bytes>> {
        state.sent += 1;
        let (method, path, body) = match self.scenario {
            Scenario::Health => (Method::GET, "/health", None),
            Scenario::HealthDb => (Method::GET, "/health/db", None),
            Scenario::Me => (Method::GET, "/v1/me", None),
            Scenario::AuditQuery => (Method::GET, "/v1/audit?limit=100", None),
            Scenario::Login => (Method::POST, "/v1/auth/password/login", self.bodies.first().cloned()),
            Scenario::Refresh => (
                Method::POST,
                "/v1/auth/token/refresh",
                Some(Bytes::from(json!({ "refresh_token": state.refresh_token }).to_string())),
            ),
            Scenario::Authorize => {
                (Method::POST, "/v1/authorize", Some(self.bodies[state.sent % self.bodies.len()].clone()))
            }
            Scenario::AuthorizeBatch => (Method::POST, "/v1/authorize/batch", self.bodies.first().cloned()),
        };
        let mut builder = self.base(method, path);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        // Every part is a valid constant or came from a valid request earlier.
        builder.body(Full::new(body.unwrap_or_default())).unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    /// Takes what the connection needs from an answer: the next refresh token, or a
    /// new family when the chain was broken.
    pub async fn answered(&self, state: &mut WorkerState, status: StatusCode, body: &[u8]) {
        if self.scenario != Scenario::Refresh {
            return;
        }
        let next = (status == StatusCode::OK)
            .then(|| serde_json::from_slice::<Value>(body).ok())
            .flatten()
            .and_then(|v| v.get("refresh_token").and_then(Value::as_str).map(str::to_owned));
        match next {
            Some(token) => state.refresh_token = token,
            None => {
                if let Ok((_, token)) = sign_in(&self.target).await {
                    state.refresh_token = token;
                }
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// One request on a connection of its own.
async fn call(addr: SocketAddr, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
    let mut connection = Connection::open(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    connection.send(request).await.map_err(|e| format!("{addr}: {e}"))
}

/// Signs in with the target's password: (session token, refresh token).
pub async fn sign_in(target: &Target) -> Result<(String, String), String> {
    let body = json!({ "email": target.email, "password": target.password }).to_string();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/password/login")
        .header("host", &target.host)
        .header("x-tenant-id", &target.tenant)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let (status, answer) = call(target.addr, request).await?;
    let value: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    match (status, field("session_token"), field("refresh_token")) {
        (StatusCode::OK, Some(session), Some(refresh)) => Ok((session, refresh)),
        _ => Err(format!(
            "sign-in as {} failed ({status}): {} — is the account there, with MFA off and sign-in limits high enough?",
            target.email,
            String::from_utf8_lossy(&answer)
        )),
    }
}
