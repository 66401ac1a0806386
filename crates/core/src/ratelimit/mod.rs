//! Rate limits per action (sign-in, sign-up, MFA verification, password reset, and
//! every API request), per client address and per targeted account, with one
//! algorithm (GCRA, see [`rule`]) and two backends: [`MemoryLimiter`] in the process,
//! and a shared one (Redis) that makes the limit hold across replicas. When the
//! shared backend fails, guard either falls back to its own memory (default) or
//! refuses the request, as configured; never an internal error.

mod memory;
mod rule;

use std::sync::Arc;

use async_trait::async_trait;

pub use memory::MemoryLimiter;
pub use rule::{Decision, Outcome, Rule};

use crate::tenants::Tenant;

/// What a limit is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Login,
    Signup,
    MfaVerify,
    PasswordReset,
    /// Every request, per client address.
    Api,
}

impl Action {
    pub const ALL: [Action; 5] = [Action::Login, Action::Signup, Action::MfaVerify, Action::PasswordReset, Action::Api];

    /// The name used in configuration, tenant settings, keys and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Signup => "signup",
            Action::MfaVerify => "mfa_verify",
            Action::PasswordReset => "password_reset",
            Action::Api => "api",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// Whose requests a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The client's address.
    Ip,
    /// The account a request names (sign-in, password reset).
    Account,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Account => "account",
        }
    }
}

/// A limiter shared by every replica (Redis): one atomic round trip per check.
#[async_trait]
pub trait SharedLimiter: Send + Sync {
    /// Applies `rule` to `key`; an error says why the backend did not answer.
    async fn check(&self, key: &str, rule: &Rule) -> Result<Outcome, String>;
}

/// What to do when the shared limiter does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedFailure {
    /// Limit with this process's memory until it answers again.
    Local,
    /// Refuse the request (503).
    Refuse,
}

/// Limits as configured for the whole installation (tenants may override them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub login: Rule,
    pub signup: Rule,
    pub mfa_verify: Rule,
    pub password_reset: Rule,
    pub api: Rule,
    pub on_shared_failure: SharedFailure,
}

impl RateLimitConfig {
    /// The installation's rule for `action`.
    pub fn rule(&self, action: Action) -> Rule {
        match action {
            Action::Login => self.login,
            Action::Signup => self.signup,
            Action::MfaVerify => self.mfa_verify,
            Action::PasswordReset => self.password_reset,
            Action::Api => self.api,
        }
    }
}

/// The shared limiter did not answer and the configuration says to refuse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the rate limiter is unavailable")]
pub struct LimiterUnavailable;

/// Rate limits over the configured backends.
pub struct RateLimiter {
    config: RateLimitConfig,
    local: MemoryLimiter,
    shared: Option<Arc<dyn SharedLimiter>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig, shared: Option<Arc<dyn SharedLimiter>>) -> RateLimiter {
        RateLimiter { config, local: MemoryLimiter::new(), shared }
    }

    /// True when limits are enforced.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The rule for `action` in `tenant` (its own setting, else the installation's).
    pub fn rule(&self, action: Action, tenant: Option<&Tenant>) -> Rule {
        tenant
            .and_then(|t| t.settings.rate_limits.get(action.as_str()))
            .and_then(|text| Rule::parse(text))
            .unwrap_or_else(|| self.config.rule(action))
    }

    /// Counts a request of `action` by `value` (an address, or an account's hash) in
    /// `tenant`; `None` when limits are off.
    pub async fn check(
        &self,
        action: Action,
        scope: Scope,
        tenant: Option<&Tenant>,
        value: &str,
    ) -> Result<Option<Decision>, LimiterUnavailable> {
        if !self.config.enabled {
            return Ok(None);
        }
        let rule = self.rule(action, tenant);
        let tenant_part = tenant.map_or_else(|| "-".to_owned(), |t| t.id.to_string());
        let key = format!("rl:{}:{}:{tenant_part}:{value}", action.as_str(), scope.as_str());
        let outcome = match &self.shared {
            Some(shared) => match shared.check(&key, &rule).await {
                Ok(outcome) => outcome,
                Err(why) => {
                    metrics::counter!("guard_rate_limit_backend_errors_total").increment(1);
                    tracing::warn!(error = %why, "shared rate limiter unavailable");
                    match self.config.on_shared_failure {
                        SharedFailure::Local => self.local.check(&key, &rule),
                        SharedFailure::Refuse => return Err(LimiterUnavailable),
                    }
                }
            },
            None => self.local.check(&key, &rule),
        };
        let decision = rule.decision(outcome);
        if !decision.allowed {
            metrics::counter!("guard_rate_limit_hits_total", "action" => action.as_str(), "scope" => scope.as_str())
                .increment(1);
        }
        Ok(Some(decision))
    }

    /// Counts a request in this process's memory only (limits that need no sharing,
    /// such as the per-address flood guard); `None` when limits are off.
    pub fn check_local(&self, action: Action, scope: Scope, value: &str) -> Option<Decision> {
        if !self.config.enabled {
            return None;
        }
        let rule = self.config.rule(action);
        let key = format!("rl:{}:{}:-:{value}", action.as_str(), scope.as_str());
        let decision = rule.decision(self.local.check(&key, &rule));
        if !decision.allowed {
            metrics::counter!("guard_rate_limit_hits_total", "action" => action.as_str(), "scope" => scope.as_str())
                .increment(1);
        }
        Some(decision)
    }
}

/// The key part naming an account: a hash of the email as typed, so Redis holds no
/// addresses.
pub fn account_key(email: &str) -> String {
    crate::risk::account_hash(email)[..16].iter().map(|b| format!("{b:02x}")).collect()
}
