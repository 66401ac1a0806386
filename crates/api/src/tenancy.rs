//! The tenant of a request (X-Tenant-ID, slug or id) and the caller behind a session,
//! as extractors. Tenants are cached per process for CACHE_TTL_SETTINGS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, header};
use guard_core::sessions::{AuthError, Authenticated, SessionToken};
use guard_core::tenants::{Tenant, TenantError, TenantStatus};
use guard_proto::ErrorCode;

use crate::{ApiError, AppState};

/// The header naming the tenant of a request.
pub static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");

/// The cookie carrying a browser's session token.
pub const SESSION_COOKIE: &str = "guard_session";

/// Cached tenants by the reference clients use, with when each was read.
type TenantEntries = HashMap<String, (Instant, Arc<Tenant>)>;

/// Tenants by the reference clients use (slug or id), each for `ttl`.
#[derive(Clone)]
pub struct TenantCache {
    ttl: Duration,
    entries: Arc<Mutex<TenantEntries>>,
}

impl TenantCache {
    /// A cache keeping entries for `ttl` (zero: no caching).
    pub fn new(ttl: Duration) -> TenantCache {
        TenantCache { ttl, entries: Arc::default() }
    }

    fn get(&self, reference: &str) -> Option<Arc<Tenant>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(reference).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, t)| t.clone())
    }

    fn put(&self, reference: &str, tenant: Arc<Tenant>) {
        if self.ttl.is_zero() || reference.len() > 64 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= 10_000 {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        entries.insert(reference.to_owned(), (Instant::now(), tenant));
    }
}

/// The active tenant named by X-Tenant-ID.
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub Arc<Tenant>);

impl FromRequestParts<AppState> for CurrentTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(reference) = parts.headers.get(&X_TENANT_ID).and_then(|v| v.to_str().ok()).map(str::trim) else {
            return Err(ApiError::new(ErrorCode::TenantRequired)
                .detail("name the tenant with the X-Tenant-ID header (its slug or id)"));
        };
        let tenant = match state.tenant_cache.get(reference) {
            Some(t) => t,
            None => {
                let found = state.tenants.find(reference).await.map_err(|e| match e {
                    TenantError::NotFound(_) => {
                        ApiError::new(ErrorCode::TenantNotFound).detail("X-Tenant-ID names no tenant")
                    }
                    TenantError::Store(e) => ApiError::from(e),
                    other => ApiError::internal(other),
                })?;
                let found = Arc::new(found);
                state.tenant_cache.put(reference, found.clone());
                found
            }
        };
        if tenant.status != TenantStatus::Active {
            return Err(ApiError::new(ErrorCode::TenantDisabled).detail("this tenant is disabled"));
        }
        tracing::Span::current().record("tenant", tenant.slug.as_str());
        Ok(CurrentTenant(tenant))
    }
}

/// The signed-in caller: a live session of the request's tenant, presented as
/// `Authorization: Bearer <token>` or the session cookie.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Arc<Tenant>,
    pub who: Authenticated,
}

fn presented_token(parts: &Parts) -> Option<&str> {
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = auth.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(token.trim());
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let CurrentTenant(tenant) = CurrentTenant::from_request_parts(parts, state).await?;
        let unauthenticated = || {
            ApiError::new(ErrorCode::Unauthenticated).detail("sign in, then send the session token as a Bearer token")
        };
        let token = presented_token(parts).and_then(SessionToken::parse).ok_or_else(unauthenticated)?;
        match state.auth.authenticate(&tenant, &token).await {
            Ok(who) => Ok(Caller { tenant, who }),
            Err(AuthError::Unauthenticated | AuthError::InvalidCredentials) => Err(unauthenticated()),
            Err(AuthError::Store(e)) => Err(ApiError::from(e)),
            Err(AuthError::Internal(e)) => Err(ApiError::internal(e)),
        }
    }
}
