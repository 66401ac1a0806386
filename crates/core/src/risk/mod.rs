//! Risk of a sign-in, from what guard sees itself: a device cookie, address or
//! network the user never completed a sign-in from, recent failures on the account
//! and from the address, and many accounts tried from one address. The score (0 to
//! 100) and its reasons go with the sign-in's events and its session; the tenant's
//! thresholds turn it into allow, a second factor, or a refusal. A refusal comes
//! before the password is checked, so it rests only on what does not depend on the
//! account existing (failures, accounts tried): it tells nothing about the account.

mod store;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use store::{AttemptCounts, KnownSources, RiskStore, SourceKind};

use crate::store::StoreError;
use crate::tenants::{Tenant, TenantId, TenantSettings};
use crate::users::UserId;

/// Failures on an account or from an address count for this long.
pub const FAILURE_WINDOW_SECONDS: i64 = 15 * 60;
/// Accounts tried from one address count for this long.
pub const ACCOUNTS_WINDOW_SECONDS: i64 = 60 * 60;

/// A sign-in's risk: a score from 0 to 100 and what raised it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRisk {
    pub score: u8,
    pub reasons: Vec<String>,
    /// The part of the score from failures and accounts tried, which does not depend
    /// on whether the account exists: the only part a refusal may rest on, since a
    /// refusal comes before the password is checked.
    #[serde(skip)]
    pub abuse_score: u8,
}

/// What guard knows about a sign-in attempt before deciding it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RiskSignals {
    /// The user has completed a sign-in before (novelty means nothing otherwise).
    pub has_history: bool,
    pub known_device: bool,
    pub known_ip: bool,
    pub known_network: bool,
    /// Failed sign-ins of this account in the last [`FAILURE_WINDOW_SECONDS`].
    pub account_failures: u64,
    /// Failed sign-ins from this address in the last [`FAILURE_WINDOW_SECONDS`].
    pub ip_failures: u64,
    /// Distinct accounts tried from this address in the last [`ACCOUNTS_WINDOW_SECONDS`].
    pub ip_accounts: u64,
}

impl RiskSignals {
    /// The score and reasons: a new device 25, a new network 30 (or a new address in a
    /// known network 10), recent account failures 20 (3+) or 40 (10+), failures from
    /// the address 20 (5+) or 40 (20+), accounts tried from the address 25 (5+) or 50
    /// (20+); at most 100.
    pub fn assess(&self) -> LoginRisk {
        let mut reasons = Vec::new();
        let mut add = |points: u32, reason: &str| {
            reasons.push(reason.to_owned());
            points
        };
        let mut novelty = 0u32;
        if self.has_history {
            if !self.known_device {
                novelty += add(25, "new_device");
            }
            if !self.known_network {
                novelty += add(30, "new_network");
            } else if !self.known_ip {
                novelty += add(10, "new_ip");
            }
        }
        let mut abuse = 0u32;
        let tiers = [
            (self.account_failures, 3, 10, 20, "account_failures"),
            (self.ip_failures, 5, 20, 20, "ip_failures"),
            (self.ip_accounts, 5, 20, 25, "ip_many_accounts"),
        ];
        for (count, low, high, points, reason) in tiers {
            if count >= high {
                abuse += add(points * 2, reason);
            } else if count >= low {
                abuse += add(points, reason);
            }
        }
        let capped = |n: u32| u8::try_from(n.min(100)).unwrap_or(100);
        LoginRisk { score: capped(novelty + abuse), reasons, abuse_score: capped(abuse) }
    }
}

/// What a tenant's thresholds make of a risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskDecision {
    Allow,
    RequireMfa,
    Deny,
}

impl RiskDecision {
    /// The decision `settings` take for `risk`: a refusal on its abuse score alone, a
    /// second factor on the whole score.
    pub fn of(risk: &LoginRisk, settings: &TenantSettings) -> RiskDecision {
        let reached = |threshold: Option<u8>, score: u8| threshold.is_some_and(|t| score >= t);
        if reached(settings.risk_deny_threshold, risk.abuse_score) {
            RiskDecision::Deny
        } else if reached(settings.risk_mfa_threshold, risk.score) {
            RiskDecision::RequireMfa
        } else {
            RiskDecision::Allow
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            RiskDecision::Allow => "allow",
            RiskDecision::RequireMfa => "require_mfa",
            RiskDecision::Deny => "deny",
        }
    }
}

/// The network an address belongs to, as users move within one: /24 for IPv4, /48
/// for IPv6.
pub fn network_of(ip: &str) -> Option<String> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(format!("{a}.{b}.{c}.0/24"))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    }
}

/// The stored form of the account a sign-in names (the email as typed, trimmed and
/// lower-cased), so attempts on unknown accounts count too without storing them.
pub fn account_hash(email: &str) -> [u8; 32] {
    Sha256::digest(email.trim().to_lowercase().as_bytes()).into()
}

/// Sign-in risk over a store of attempts and known sources.
pub struct RiskService {
    store: Arc<dyn RiskStore>,
}

impl RiskService {
    pub fn new(store: Arc<dyn RiskStore>) -> RiskService {
        RiskService { store }
    }

    /// The signals of an attempt on `account` (and `user`, when it exists) from `ip`
    /// with the device cookie hash `device`.
    pub async fn signals(
        &self,
        tenant: TenantId,
        account: &[u8; 32],
        user: Option<UserId>,
        ip: Option<&str>,
        device: Option<&str>,
    ) -> Result<RiskSignals, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ip = ip.unwrap_or("");
        let counts = self
            .store
            .attempt_counts(tenant, account, ip, now - FAILURE_WINDOW_SECONDS, now - ACCOUNTS_WINDOW_SECONDS)
            .await?;
        let known = match user {
            Some(user) => {
                let network = network_of(ip);
                self.store.known_sources(tenant, user, device, ip, network.as_deref()).await?
            }
            None => KnownSources::default(),
        };
        Ok(RiskSignals {
            has_history: known.any,
            known_device: known.device,
            known_ip: known.ip,
            known_network: known.network,
            account_failures: counts.account_failures,
            ip_failures: counts.ip_failures,
            ip_accounts: counts.ip_accounts,
        })
    }

    /// Records an attempt (`guard serve` prunes old ones, see `BruteForce::prune`).
    pub async fn record_attempt(
        &self,
        tenant: TenantId,
        account: &[u8; 32],
        ip: Option<&str>,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.store.record_attempt(tenant, account, ip.unwrap_or(""), succeeded, now).await
    }

    /// Remembers the device, address and network of a completed sign-in of `user`.
    pub async fn remember(
        &self,
        tenant: &Tenant,
        user: UserId,
        ip: Option<&str>,
        device: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let network = ip.and_then(network_of);
        let sources = [(SourceKind::Device, device), (SourceKind::Ip, ip), (SourceKind::Network, network.as_deref())];
        for (kind, value) in sources {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                self.store.remember_source(tenant.id, user, kind, value, at).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_sign_in_is_not_novel_and_a_new_device_on_a_new_network_is() {
        assert_eq!(RiskSignals::default().assess(), LoginRisk::default());
        let known = RiskSignals {
            has_history: true,
            known_device: true,
            known_ip: true,
            known_network: true,
            ..Default::default()
        };
        assert_eq!(known.assess().score, 0);
        let travelling = RiskSignals { known_device: false, known_network: false, ..known };
        assert_eq!(
            travelling.assess(),
            LoginRisk { score: 55, reasons: vec!["new_device".into(), "new_network".into()], abuse_score: 0 }
        );
        let new_ip = RiskSignals { known_ip: false, ..known };
        assert_eq!(new_ip.assess(), LoginRisk { score: 10, reasons: vec!["new_ip".into()], abuse_score: 0 });
    }

    #[test]
    fn failures_and_many_accounts_raise_the_score_in_tiers_up_to_100() {
        let some = RiskSignals { account_failures: 3, ip_failures: 5, ip_accounts: 5, ..Default::default() };
        assert_eq!(some.assess().score, 65);
        let stuffing = RiskSignals { account_failures: 10, ip_failures: 20, ip_accounts: 20, ..Default::default() };
        let risk = stuffing.assess();
        assert_eq!((risk.score, risk.abuse_score), (100, 100));
        assert_eq!(risk.reasons, ["account_failures", "ip_failures", "ip_many_accounts"]);
        let below = RiskSignals { account_failures: 2, ip_failures: 4, ip_accounts: 4, ..Default::default() };
        assert_eq!(below.assess().score, 0);
    }

    #[test]
    fn thresholds_decide_and_unset_ones_never_act() {
        let risk = LoginRisk { score: 60, reasons: vec![], abuse_score: 60 };
        let mut settings = TenantSettings::default();
        assert_eq!(RiskDecision::of(&risk, &settings), RiskDecision::Allow);
        settings.risk_mfa_threshold = Some(50);
        assert_eq!(RiskDecision::of(&risk, &settings), RiskDecision::RequireMfa);
        settings.risk_deny_threshold = Some(60);
        assert_eq!(RiskDecision::of(&risk, &settings), RiskDecision::Deny);
        settings.risk_deny_threshold = Some(61);
        assert_eq!(RiskDecision::of(&risk, &settings), RiskDecision::RequireMfa);
        // Novelty alone (which only real accounts can show) never refuses.
        let novel = LoginRisk { score: 60, reasons: vec![], abuse_score: 0 };
        settings.risk_deny_threshold = Some(10);
        assert_eq!(RiskDecision::of(&novel, &settings), RiskDecision::RequireMfa);
    }

    #[test]
    fn networks_are_slash_24_and_slash_48() {
        assert_eq!(network_of("203.0.113.77").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(network_of("2001:db8:abcd:12::1").as_deref(), Some("2001:db8:abcd::/48"));
        assert_eq!(network_of("not an address"), None);
    }
}
