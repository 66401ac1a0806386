//! `guard cert list [--expiring 30d]`: the TLS certificate chain and every tenant's
//! token-signing keys, with when each expires or is due for rotation.

use std::path::PathBuf;

use clap::Subcommand;
use guard_core::Config;
use guard_core::keys::{KeyService, KeyStatus, RETIRED_KEYS_PUBLISHED_FOR};
use guard_core::tenants::TenantService;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::database::services;
use crate::{Failure, Format, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum CertAction {
    /// List certificates and signing keys with their expiry, soonest first.
    List {
        /// Only what needs renewing or rotating within this long (such as 30d); exit 1
        /// when anything does.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expiring: Option<std::time::Duration>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    guard_core::config::parse::duration(text).ok_or_else(|| format!("{text:?}: expected a duration such as 30d or 12h"))
}

/// One thing that expires.
pub(crate) struct Expiring {
    /// `tls` or `signing_key`.
    pub kind: &'static str,
    pub name: String,
    pub tenant: Option<String>,
    /// What happens at `expires_at`.
    pub meaning: &'static str,
    pub expires_at: OffsetDateTime,
    /// Whether an operator must act before then (a retired key expires by design).
    pub needs_action: bool,
}

/// A time later than any expiry (for durations too long to add).
fn far_future() -> OffsetDateTime {
    time::macros::datetime!(9999-12-31 23:59:59 UTC)
}

/// The TLS chain's certificates (when TLS is configured).
fn tls_certificates(config: &Config) -> Result<Vec<Expiring>, Failure> {
    let Some(files) = &config.tls.files else { return Ok(Vec::new()) };
    let chain = guard_api::tls::describe(&files.cert).map_err(Failure::Runtime)?;
    Ok(chain
        .into_iter()
        .enumerate()
        .map(|(i, cert)| Expiring {
            kind: "tls",
            name: cert.common_name.clone().filter(|c| !c.is_empty()).unwrap_or(cert.subject.clone()),
            tenant: None,
            meaning: if i == 0 { "certificate expires" } else { "chain certificate expires" },
            expires_at: cert.not_after,
            needs_action: true,
        })
        .collect())
}

/// Every tenant's signing keys: an active key is due for rotation at its age limit; a
/// retired one stops verifying tokens when it leaves the JWKS.
pub(crate) async fn signing_keys(
    tenants: &TenantService,
    keys: &KeyService,
    max_age: std::time::Duration,
) -> Result<Vec<Expiring>, String> {
    let mut found = Vec::new();
    let mut cursor = None;
    let now = OffsetDateTime::now_utc();
    loop {
        let page = tenants.list(cursor, 500).await.map_err(|e| e.to_string())?;
        for tenant in &page.tenants {
            for key in keys.list(tenant.id).await.map_err(|e| e.to_string())? {
                let (meaning, expires_at) = match (key.status, key.retired_at) {
                    (KeyStatus::Active, _) => (
                        "signing key due for rotation",
                        key.created_at
                            .checked_add(time::Duration::try_from(max_age).unwrap_or(time::Duration::MAX))
                            .unwrap_or(far_future()),
                    ),
                    (KeyStatus::Retired, Some(at)) => ("retired key stops verifying", at + RETIRED_KEYS_PUBLISHED_FOR),
                    (KeyStatus::Retired, None) => continue,
                };
                if key.status == KeyStatus::Retired && !key.published(now) {
                    continue;
                }
                found.push(Expiring {
                    kind: "signing_key",
                    name: key.id.to_string(),
                    tenant: Some(tenant.slug.to_string()),
                    meaning,
                    expires_at,
                    needs_action: key.status == KeyStatus::Active,
                });
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(found)
}

/// Sets guard_certificate_expiry_timestamp_seconds{kind="signing_key",name="active"}
/// per tenant: when its active key is due for rotation. One series per tenant, so a
/// rotation moves it rather than leaving the old key's series behind.
pub(crate) fn export_key_expiry(keys: &[Expiring]) {
    for key in keys.iter().filter(|k| k.needs_action) {
        metrics::gauge!(
            guard_api::tls::EXPIRY_GAUGE,
            "kind" => key.kind,
            "name" => "active",
            "tenant" => key.tenant.clone().unwrap_or_default()
        )
        .set(key.expires_at.unix_timestamp() as f64);
    }
}

pub(crate) async fn run(file: Option<PathBuf>, action: CertAction) -> Result<(), Failure> {
    let CertAction::List { expiring, format } = action;
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let config = loaded.config;
    let mut all = tls_certificates(&config)?;
    let (db, services) = services(&config).await?;
    let keys = signing_keys(&services.tenants, &services.keys, config.security.signing_key_max_age).await;
    db.pool.close().await;
    all.extend(keys.map_err(Failure::Runtime)?);
    all.sort_by_key(|e| e.expires_at);
    let now = OffsetDateTime::now_utc();
    if let Some(within) = expiring {
        // Retired keys leave by themselves: only what needs an operator counts.
        let until =
            now.checked_add(time::Duration::try_from(within).unwrap_or(time::Duration::MAX)).unwrap_or(far_future());
        all.retain(|e| e.needs_action && e.expires_at <= until);
    }
    let days = |e: &Expiring| (e.expires_at - now).whole_hours() as f64 / 24.0;
    match format {
        Format::Json => {
            let list: Vec<_> = all
                .iter()
                .map(|e| {
                    json!({
                        "kind": e.kind, "name": e.name, "tenant": e.tenant, "meaning": e.meaning,
                        "expires_at": e.expires_at.format(&Rfc3339).unwrap_or_default(),
                        "days_left": (days(e) * 10.0).round() / 10.0,
                    })
                })
                .collect();
            say!("{}", serde_json::to_string_pretty(&json!({ "items": list })).unwrap_or_default());
        }
        Format::Table => {
            say!("{:<12}  {:<44}  {:<12}  {:<21}  {:>9}  MEANING", "KIND", "NAME", "TENANT", "EXPIRES", "DAYS LEFT");
            for e in &all {
                say!(
                    "{:<12}  {:<44}  {:<12}  {:<21}  {:>9.1}  {}",
                    e.kind,
                    e.name,
                    e.tenant.as_deref().unwrap_or("-"),
                    e.expires_at.format(&Rfc3339).unwrap_or_default().chars().take(19).collect::<String>(),
                    days(e),
                    e.meaning
                );
            }
            if config.tls.files.is_none() {
                say!("(TLS_CERT_FILE is not set: guard serves plain HTTP)");
            }
        }
    }
    match expiring {
        Some(within) if !all.is_empty() => Err(Failure::Runtime(format!(
            "{} certificates or keys expire within {}",
            all.len(),
            crate::ops_cmd::humantime_duration(within)
        ))),
        _ => Ok(()),
    }
}
