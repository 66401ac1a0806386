//! `guard tenant create | list | disable`.

use std::path::PathBuf;

use clap::Subcommand;
use guard_core::events::Actor;
use guard_core::tenants::{Tenant, TenantError, TenantId};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::database::{Migrations, prepare, tenants};
use crate::{Failure, Format, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum TenantAction {
    /// Create a tenant.
    Create {
        /// Display name, for example "Acme Corp".
        name: String,
        /// Short name used in X-Tenant-ID and URLs; derived from the name when omitted.
        #[arg(long)]
        slug: Option<String>,
    },
    /// List tenants, oldest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue after this tenant id (the `next_cursor` of the previous page).
        #[arg(long)]
        cursor: Option<uuid::Uuid>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Disable a tenant (by slug or id): its users can no longer sign in.
    Disable { tenant: String },
}

fn failure(e: TenantError) -> Failure {
    match e {
        TenantError::Invalid(message) => Failure::Config(message),
        other => Failure::Runtime(other.to_string()),
    }
}

fn timestamp(t: &Tenant) -> String {
    t.created_at.format(&Rfc3339).unwrap_or_default()
}

pub(crate) async fn run(file: Option<PathBuf>, action: TenantAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let db = prepare(&loaded.config, Migrations::Apply).await?;
    let service = tenants(&db, &loaded.config)?;
    let result = match action {
        TenantAction::Create { name, slug } => service.create(Actor::Operator, &name, slug.as_deref()).await.map(|t| {
            say!("created tenant {} ({}), id {}", t.slug, t.name.as_str(), t.id);
        }),
        TenantAction::Disable { tenant } => service.disable(Actor::Operator, &tenant).await.map(|t| {
            say!("tenant {} is disabled", t.slug);
        }),
        TenantAction::List { limit, cursor, format } => {
            service.list(cursor.map(TenantId), limit).await.map(|page| match format {
                Format::Json => {
                    let tenants: Vec<_> = page
                        .tenants
                        .iter()
                        .map(|t| {
                            json!({
                                "id": t.id, "slug": t.slug, "name": t.name, "status": t.status,
                                "created_at": timestamp(t), "settings": t.settings,
                            })
                        })
                        .collect();
                    let doc = json!({ "tenants": tenants, "next_cursor": page.next_cursor });
                    say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                }
                Format::Table => {
                    say!("{:<24}  {:<9}  {:<36}  {:<20}  NAME", "SLUG", "STATUS", "ID", "CREATED");
                    for t in &page.tenants {
                        let created = timestamp(t);
                        let created = created.get(..19).unwrap_or(&created);
                        say!(
                            "{:<24}  {:<9}  {:<36}  {:<20}  {}",
                            t.slug,
                            t.status.as_str(),
                            t.id,
                            created,
                            t.name.as_str()
                        );
                    }
                    if let Some(next) = page.next_cursor {
                        say!("\nmore: guard tenant list --cursor {next}");
                    }
                }
            })
        }
    };
    db.pool.close().await;
    result.map_err(failure)
}
