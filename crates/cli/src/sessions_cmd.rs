//! `guard sessions revoke`.

use std::path::PathBuf;

use clap::Subcommand;
use guard_core::events::Actor;
use guard_core::sessions::SessionScope;

use crate::database::services;
use crate::{Failure, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum SessionsAction {
    /// End sessions (with their refresh and access tokens) at once.
    Revoke {
        /// Every session (of --tenant when given, else of every tenant).
        #[arg(long, required_unless_present = "user")]
        all: bool,
        /// Only this user's sessions (email or id; needs --tenant or uses default).
        #[arg(long, conflicts_with = "all")]
        user: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub(crate) async fn run(file: Option<PathBuf>, action: SessionsAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (db, all) = services(&loaded.config).await?;
    let runtime = |e: &dyn std::fmt::Display| Failure::Runtime(e.to_string());
    let result = async {
        let SessionsAction::Revoke { user, tenant, .. } = action;
        let tenant = match tenant.as_deref().or(user.as_ref().map(|_| "default")) {
            Some(reference) => Some(all.tenants.find(reference).await.map_err(|e| runtime(&e))?),
            None => None,
        };
        let user = match (&user, &tenant) {
            (Some(user), Some(tenant)) => {
                Some(all.users.find(&tenant.id.to_string(), user).await.map_err(|e| runtime(&e))?.id)
            }
            _ => None,
        };
        let scope = SessionScope { tenant: tenant.as_ref().map(|t| t.id), user, except: None };
        let revoked = all.auth.revoke_all(Actor::Operator, scope).await.map_err(|e| runtime(&e))?;
        let place = tenant.map_or_else(|| "every tenant".to_owned(), |t| format!("tenant {}", t.slug));
        say!("revoked {} sessions in {place}", revoked.len());
        Ok(())
    }
    .await;
    db.pool.close().await;
    result
}
