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
use guard_core::users::User;
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

    /// Drops every entry, after this process changed a tenant.
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
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
        let Some(reference) = crate::extract::header_text(&parts.headers, &X_TENANT_ID)?.map(str::trim) else {
            return Err(ApiError::new(ErrorCode::TenantRequired)
                .detail("name the tenant with the X-Tenant-ID header (its slug or id)"));
        };
        let tenant = active_tenant(state, reference).await?;
        tracing::Span::current().record("tenant", tenant.slug.as_str());
        Ok(CurrentTenant(tenant))
    }
}

/// The active tenant with this slug or id, through the per-process cache.
pub async fn active_tenant(state: &AppState, reference: &str) -> Result<Arc<Tenant>, ApiError> {
    let tenant = match state.tenant_cache.get(reference) {
        Some(t) => t,
        None => {
            let found = state.tenants.find(reference).await.map_err(|e| match e {
                TenantError::NotFound(_) => ApiError::new(ErrorCode::TenantNotFound).detail("no such tenant"),
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
    Ok(tenant)
}
/// The signed-in caller: a live session of the request's tenant, presented as
/// `Authorization: Bearer <session token or access token>` or the session cookie.
/// An account that must change its password may only read /v1/me, change the
/// password and sign out.
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

/// Routes an account that must change its password may still use.
fn allowed_before_password_change(parts: &Parts) -> bool {
    matches!(
        (parts.method.as_str(), parts.uri.path()),
        ("GET", "/v1/me") | ("PUT", "/v1/me/password") | ("POST", "/v1/auth/logout")
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let CurrentTenant(tenant) = CurrentTenant::from_request_parts(parts, state).await?;
        let unauthenticated = || {
            ApiError::new(ErrorCode::Unauthenticated)
                .detail("sign in, then send the session token or access token as a Bearer token")
        };
        let presented = presented_token(parts).ok_or_else(unauthenticated)?;
        // An access token is a JWT (three dot-separated parts); a session token has no dots.
        let authenticated = if presented.contains('.') {
            state.auth.authenticate_access(&tenant, presented).await
        } else {
            let token = SessionToken::parse(presented).ok_or_else(unauthenticated)?;
            state.auth.authenticate(&tenant, &token).await
        };
        let who = match authenticated {
            Ok(who) => who,
            Err(AuthError::Store(e)) => return Err(ApiError::from(e)),
            Err(AuthError::Internal(e)) => return Err(ApiError::internal(e)),
            Err(_) => return Err(unauthenticated()),
        };
        if who.user.password_change_required && !allowed_before_password_change(parts) {
            return Err(ApiError::new(ErrorCode::PasswordChangeRequired)
                .detail("choose a new password with PUT /v1/me/password first"));
        }
        tracing::Span::current().record("user", tracing::field::display(who.user.id));
        Ok(Caller { tenant, who })
    }
}

/// The action of guard's administrative API a route performs, decided by Cedar
/// (see `guard_core::authz::builtin`): reads are `<area>.read`, changes
/// `<area>.write`, with a few actions of their own.
pub(crate) fn admin_action(method: &axum::http::Method, path: &str) -> &'static str {
    let read = matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
    let rest = path.strip_prefix("/v1/").or_else(|| path.strip_prefix("/admin/")).unwrap_or(path);
    let area = rest.split('/').next().unwrap_or_default();
    if path.starts_with("/admin/") {
        return "platform.read";
    }
    if path.starts_with("/debug/") {
        return "platform.debug";
    }
    match (area, read) {
        ("audit", _) if rest.starts_with("audit/export") => "audit.export",
        ("audit", _) if rest.starts_with("audit/verify") => "audit.verify",
        ("audit", _) => "audit.read",
        ("users", false) if rest.ends_with("/mfa") => "users.mfa.reset",
        ("users", false) if rest.ends_with("/unlock") => "security.write",
        ("users", true) => "users.read",
        ("users", false) => "users.write",
        ("tenants", true) => "tenants.read",
        ("tenants", false) => "tenants.write",
        ("groups", true) => "groups.read",
        ("groups", false) if rest.contains("/members/") => "groups.members",
        ("groups", false) => "groups.write",
        ("roles", true) => "roles.read",
        ("roles", false) => "roles.write",
        ("policies", true) => "policies.read",
        // Validating changes nothing, but shows what a change would do.
        ("policies", false) if rest == "policies/validate" => "policies.read",
        ("policies", false) => "policies.write",
        ("entities", true) => "entities.read",
        ("entities", false) => "entities.write",
        ("security", true) => "security.read",
        ("security", false) => "security.write",
        // A route missing here is refused rather than guessed at.
        _ => "unmapped",
    }
}

/// Refuses with 403 naming `action` unless Cedar permits it to the caller.
pub(crate) async fn require(state: &AppState, caller: &Caller, action: &str) -> Result<(), ApiError> {
    let decision = state
        .authz
        .permits(caller.tenant.id, caller.who.user.id.0, action)
        .await
        .map_err(crate::authz_routes::authz_error)?;
    if decision.allowed() {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::Forbidden)
        .detail(format!("the action {action} is not permitted to you in this tenant"))
        .extension("action", serde_json::json!(action)))
}

/// Refuses with 403 unless the caller may take control of `target`'s account: hold
/// every right of guard's API the target holds (as if active), and `users.roles` when
/// the target holds roles. Every administrative action on another account that could
/// hand it over or shut its owner out goes through here (docs/authorization.md).
pub(crate) async fn require_control(state: &AppState, caller: &Caller, target: &User) -> Result<(), ApiError> {
    let missing = state
        .authz
        .control_shortfall(caller.tenant.id, caller.who.user.id.0, target.id.0)
        .await
        .map_err(crate::authz_routes::authz_error)?;
    let Some(first) = missing.first() else { return Ok(()) };
    Err(ApiError::new(ErrorCode::Forbidden)
        .detail(format!(
            "this account holds rights you lack ({}): only someone holding all of them may change it, reset its \
             password or second factors, unlock, disable or delete it",
            missing.join(", ")
        ))
        .extension("action", serde_json::json!(first))
        .extension("missing_actions", serde_json::json!(missing)))
}

/// A caller whom the tenant's policies permit the route's administrative action
/// (by default: the roles admin, auditor for reads, authorizer for entities).
#[derive(Debug, Clone)]
pub struct TenantAdmin(pub Caller);

impl FromRequestParts<AppState> for TenantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let path = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or_else(|| parts.uri.path().to_owned(), |m| m.as_str().to_owned());
        let action = admin_action(&parts.method, &path);
        if action == "unmapped" {
            return Err(ApiError::internal(format!("no administrative action for {} {path}", parts.method)));
        }
        require(state, &caller, action).await?;
        Ok(TenantAdmin(caller))
    }
}

/// An administrator of the default tenant: manages every tenant.
#[derive(Debug, Clone)]
pub struct PlatformAdmin(pub Caller);

impl FromRequestParts<AppState> for PlatformAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let TenantAdmin(caller) = TenantAdmin::from_request_parts(parts, state).await?;
        if caller.tenant.slug.as_str() != guard_core::tenants::TenantSlug::DEFAULT {
            return Err(ApiError::new(ErrorCode::Forbidden)
                .detail("managing tenants needs the admin role in the default tenant"));
        }
        Ok(PlatformAdmin(caller))
    }
}
