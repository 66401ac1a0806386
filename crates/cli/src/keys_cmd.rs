//! `guard keys list | rotate`.

use std::path::PathBuf;

use clap::Subcommand;
use guard_core::keys::KeyStatus;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::database::services;
use crate::{Failure, Format, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysAction {
    /// List a tenant's token signing keys, newest first.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Make a new key the tenant's signing key. Tokens signed with the previous key
    /// stay valid until they expire; every process signs with the new key within
    /// CACHE_TTL_SETTINGS.
    Rotate {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

pub(crate) async fn run(file: Option<PathBuf>, action: KeysAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (db, all) = services(&loaded.config).await?;
    let runtime = |e: &dyn std::fmt::Display| Failure::Runtime(e.to_string());
    let result = async {
        match action {
            KeysAction::List { tenant, format } => {
                let tenant = all.tenants.find(&tenant).await.map_err(|e| runtime(&e))?;
                let keys = all.keys.list(tenant.id).await.map_err(|e| runtime(&e))?;
                let now = time::OffsetDateTime::now_utc();
                let time = |t: &time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
                let state = |k: &guard_core::keys::SigningKey| match (k.status, k.published(now)) {
                    (KeyStatus::Active, _) => "active",
                    (KeyStatus::Retired, true) => "retired (verifying)",
                    (KeyStatus::Retired, false) => "expired",
                };
                match format {
                    Format::Json => {
                        let list: Vec<_> = keys
                            .iter()
                            .map(|k| {
                                json!({
                                    "kid": k.id, "algorithm": k.algorithm.as_str(), "state": state(k),
                                    "created_at": time(&k.created_at), "retired_at": k.retired_at.as_ref().map(time),
                                })
                            })
                            .collect();
                        say!("{}", serde_json::to_string_pretty(&json!({ "keys": list })).unwrap_or_default());
                    }
                    Format::Table => {
                        say!("{:<43}  {:<6}  {:<20}  CREATED", "KID", "ALG", "STATE");
                        for k in &keys {
                            say!(
                                "{:<43}  {:<6}  {:<20}  {}",
                                k.id,
                                k.algorithm.as_str(),
                                state(k),
                                time(&k.created_at)
                            );
                        }
                    }
                }
                Ok(())
            }
            KeysAction::Rotate { tenant } => {
                let tenant = all.tenants.find(&tenant).await.map_err(|e| runtime(&e))?;
                let key = all.keys.rotate(tenant.id).await.map_err(|e| runtime(&e))?;
                say!("tenant {} now signs with key {} ({})", tenant.slug, key.id, key.algorithm.as_str());
                Ok(())
            }
        }
    }
    .await;
    db.pool.close().await;
    result
}
