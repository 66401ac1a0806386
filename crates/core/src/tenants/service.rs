//! The rules around tenants: valid names and slugs, a `default` tenant that always
//! exists and cannot be disabled, and an event for every change.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::model::{NewTenant, Tenant, TenantId, TenantName, TenantSettings, TenantSlug, TenantStatus};
use super::store::{TenantPage, TenantStore};
use crate::events::{Actor, Event};
use crate::store::StoreError;

/// Why a tenant operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The input is not valid; the text says what would be.
    #[error("{0}")]
    Invalid(String),
    #[error("a tenant with the slug {0:?} already exists")]
    SlugTaken(String),
    #[error("no tenant {0:?}")]
    NotFound(String),
    #[error("the default tenant cannot be disabled")]
    DefaultProtected,
    #[error(transparent)]
    Store(StoreError),
}

/// Tenant operations.
#[derive(Clone)]
pub struct TenantService {
    store: Arc<dyn TenantStore>,
    events: crate::audit::AuditLog,
}

impl TenantService {
    /// A service over `store`, reporting to `events`.
    pub fn new(store: Arc<dyn TenantStore>, events: crate::audit::AuditLog) -> TenantService {
        TenantService { store, events }
    }

    /// Creates the `default` tenant unless it exists (first start); safe to call from
    /// several processes at once.
    pub async fn ensure_default(&self) -> Result<(), TenantError> {
        let new = NewTenant {
            slug: TenantSlug::parse(TenantSlug::DEFAULT).map_err(TenantError::Invalid)?,
            name: TenantName::parse("Default").map_err(TenantError::Invalid)?,
            settings: TenantSettings::default(),
        };
        let id = TenantId::generate();
        let record = self.events.record(
            &Event::success("tenant.created", Actor::System)
                .tenant(id.0)
                .target(TenantSlug::DEFAULT)
                .details(json!({ "bootstrap": true })),
        );
        if self.store.create_if_absent(id, &new, &record).await.map_err(TenantError::Store)? {
            self.events.committed(&record);
        }
        Ok(())
    }

    /// Creates a tenant named `name`, with `slug` or one derived from the name.
    pub async fn create(&self, actor: Actor, name: &str, slug: Option<&str>) -> Result<Tenant, TenantError> {
        let name = TenantName::parse(name).map_err(TenantError::Invalid)?;
        let slug = match slug {
            Some(s) => TenantSlug::parse(s),
            None => TenantSlug::from_name(&name),
        }
        .map_err(TenantError::Invalid)?;
        let new = NewTenant { slug, name, settings: TenantSettings::default() };
        let id = TenantId::generate();
        let record = self.events.record(
            &Event::success("tenant.created", actor)
                .tenant(id.0)
                .target(new.slug.as_str())
                .details(json!({ "name": new.name.as_str() })),
        );
        let tenant = match self.store.create(id, &new, &record).await {
            Ok(t) => t,
            Err(StoreError::Conflict(_)) => return Err(TenantError::SlugTaken(new.slug.to_string())),
            Err(e) => return Err(TenantError::Store(e)),
        };
        self.events.committed(&record);
        Ok(tenant)
    }

    /// The tenant named by `reference`: its slug or its id.
    pub async fn find(&self, reference: &str) -> Result<Tenant, TenantError> {
        let found = match Uuid::parse_str(reference) {
            Ok(id) => self.store.get(TenantId(id)).await,
            Err(_) => match TenantSlug::parse(reference) {
                Ok(slug) => self.store.get_by_slug(&slug).await,
                Err(_) => Ok(None),
            },
        };
        found.map_err(TenantError::Store)?.ok_or_else(|| TenantError::NotFound(reference.to_owned()))
    }

    /// Up to `limit` (1 to 500) tenants after the cursor.
    pub async fn list(&self, after: Option<TenantId>, limit: u32) -> Result<TenantPage, TenantError> {
        self.store.list(after, limit.clamp(1, 500)).await.map_err(TenantError::Store)
    }

    /// Changes some of the tenant's settings: `changes` is an object of the settings to
    /// change; the result is checked as a whole. Processes pick the change up within
    /// CACHE_TTL_SETTINGS.
    pub async fn update_settings(
        &self,
        actor: Actor,
        reference: &str,
        changes: &serde_json::Value,
    ) -> Result<Tenant, TenantError> {
        let tenant = self.find(reference).await?;
        let Some(changes) = changes.as_object() else {
            return Err(TenantError::Invalid("settings must be a JSON object".into()));
        };
        let mut merged = serde_json::to_value(&tenant.settings).map_err(|e| TenantError::Invalid(e.to_string()))?;
        for (key, value) in changes {
            merged[key] = value.clone();
        }
        let settings: TenantSettings =
            serde_json::from_value(merged).map_err(|e| TenantError::Invalid(format!("settings: {e}")))?;
        let problems = settings.problems();
        if !problems.is_empty() {
            return Err(TenantError::Invalid(problems.join("; ")));
        }
        let record = self.events.record(
            &Event::success("tenant.settings_updated", actor)
                .tenant(tenant.id.0)
                .target(tenant.slug.as_str())
                .details(serde_json::json!({ "changed": changes.keys().collect::<Vec<_>>() })),
        );
        let tenant = self.store.set_settings(tenant.id, &settings, &record).await.map_err(TenantError::Store)?;
        self.events.committed(&record);
        Ok(tenant)
    }

    /// Disables the tenant named by `reference`; its users can no longer sign in.
    pub async fn disable(&self, actor: Actor, reference: &str) -> Result<Tenant, TenantError> {
        let tenant = self.find(reference).await?;
        if tenant.slug.as_str() == TenantSlug::DEFAULT {
            return Err(TenantError::DefaultProtected);
        }
        if tenant.status == TenantStatus::Disabled {
            return Ok(tenant);
        }
        let record = self
            .events
            .record(&Event::success("tenant.disabled", actor).tenant(tenant.id.0).target(tenant.slug.as_str()));
        let tenant =
            self.store.set_status(tenant.id, TenantStatus::Disabled, &record).await.map_err(TenantError::Store)?;
        self.events.committed(&record);
        Ok(tenant)
    }
}
