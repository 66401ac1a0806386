//! Tenants: isolated identity domains, each with its own users, sessions and settings.

mod model;
mod service;
mod store;

pub use model::{NewTenant, Tenant, TenantId, TenantName, TenantSettings, TenantSlug, TenantStatus};
pub use service::{TenantError, TenantService};
pub use store::{TenantPage, TenantStore};
