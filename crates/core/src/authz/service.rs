//! The authorization service: per-tenant engines kept current across processes, the
//! decision cache, versioned policy changes, entities, groups and roles.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use cedar_policy::Entities;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::builtin::{self, BUILTIN_ROLES};
use super::compile::{self, issue_from};
use super::engine::{Decision, DecisionInput, Prepared, TenantEngine, UserEntry, user_type};
use super::model::{AuthzError, Group, Issue, PolicySnapshot, PolicyVersion, Role, check_name, check_policy_id};
use super::slice::LoadedEntity;
use super::stats::{StatsRegistry, StatsReport};
use super::store::{AuthzStore, PolicyHead, StoredEntity};
use crate::audit::AuditLog;
use crate::events::{Actor, Event, EventSink, Outcome};
use crate::store::StoreError;
use crate::tenants::TenantId;

/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;
/// Most entities in one upsert.
pub const MAX_UPSERT: usize = 1000;
/// Requests whose cache key is longer are not cached.
const MAX_CACHED_KEY: usize = 8 * 1024;

/// How decisions are made and kept.
#[derive(Debug, Clone)]
pub struct AuthzSettings {
    /// A decision whose evaluation takes longer is a deny (EVAL_TIMEOUT_MS).
    pub eval_timeout: Duration,
    /// Decisions kept in the cache, over all tenants; 0 disables it (CACHE_SIZE).
    pub cache_size: usize,
    /// Users kept per tenant engine.
    pub user_cache_size: usize,
    /// Share of allowed decisions recorded as audit events (0 to 1).
    pub audit_allowed_sample: f64,
    /// Repeats of one denial within this window are counted, not each recorded.
    pub audit_denied_window: Duration,
    /// Stored entities kept in memory, over all tenants; 0 reads every decision's
    /// entities from the database (AUTHZ_ENTITY_CACHE_SIZE).
    pub entity_cache_size: usize,
    /// Most policies a tenant may hold (AUTHZ_MAX_POLICIES).
    pub max_policies: usize,
    /// Most bytes of policy text a tenant may hold (AUTHZ_MAX_POLICY_BYTES).
    pub max_policy_bytes: usize,
}

impl Default for AuthzSettings {
    fn default() -> Self {
        AuthzSettings {
            eval_timeout: Duration::from_millis(100),
            cache_size: 10_000,
            user_cache_size: 10_000,
            audit_allowed_sample: 0.0,
            audit_denied_window: Duration::from_secs(10),
            entity_cache_size: 100_000,
            max_policies: 1000,
            max_policy_bytes: 1024 * 1024,
        }
    }
}

struct Inner {
    store: Arc<dyn AuthzStore>,
    events: AuditLog,
    settings: AuthzSettings,
    engines: RwLock<HashMap<TenantId, Arc<TenantEngine>>>,
    /// One lock per tenant, so that a tenant's engine is built once at a time
    /// without holding up other tenants'.
    building: std::sync::Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    cache: Option<quick_cache::sync::Cache<String, Arc<Decision>>>,
    /// Stored entities as parsed, by tenant, versions and uid; `None`: not stored.
    entities: Option<quick_cache::sync::Cache<EntityKey, Option<Arc<LoadedEntity>>>>,
    stats: StatsRegistry,
    denials: DenialWindow,
}

/// A stored entity of a tenant at its policy and entity versions (the schema an
/// entity is read with comes with the policies).
type EntityKey = (TenantId, i64, i64, cedar_policy::EntityUid);

/// Keeps the audit log to one event per distinct denial (same tenant, actor,
/// principal, action and resource) per window: repeats inside the window are
/// counted, and the count goes into that denial's next event as `repeats_before`.
/// A client retrying a refused request thousands of times a second would otherwise
/// fill the log with copies. A zero window records every denial.
struct DenialWindow {
    window: Duration,
    seen: std::sync::Mutex<HashMap<String, (Instant, u64)>>,
}

impl DenialWindow {
    /// The repeats to report if this denial is to be recorded now; `None` when it
    /// is a repeat inside the window (and has been counted).
    fn record(&self, tenant: TenantId, actor: &Actor, target: &str) -> Option<u64> {
        if self.window.is_zero() {
            return Some(0);
        }
        let key = format!("{}\0{}\0{target}", tenant.0, actor.label());
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= 100_000 {
            seen.retain(|_, (since, _)| now.duration_since(*since) < self.window);
            if seen.len() >= 100_000 {
                // Too many distinct denials to track: start over rather than grow.
                seen.clear();
            }
        }
        match seen.get_mut(&key) {
            Some((since, repeats)) if now.duration_since(*since) < self.window => {
                *repeats += 1;
                None
            }
            Some((since, repeats)) => {
                let reported = *repeats;
                *since = now;
                *repeats = 0;
                Some(reported)
            }
            None => {
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// The authorization service; cheap to clone.
#[derive(Clone)]
pub struct Authz {
    inner: Arc<Inner>,
}

fn now_us() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn actor_label(actor: &Actor) -> String {
    actor.label()
}

impl Authz {
    pub fn new(store: Arc<dyn AuthzStore>, events: AuditLog, settings: AuthzSettings) -> Authz {
        let cache = (settings.cache_size > 0).then(|| quick_cache::sync::Cache::new(settings.cache_size));
        let entities =
            (settings.entity_cache_size > 0).then(|| quick_cache::sync::Cache::new(settings.entity_cache_size));
        let denials = DenialWindow { window: settings.audit_denied_window, seen: Default::default() };
        Authz {
            inner: Arc::new(Inner {
                store,
                events,
                settings,
                engines: RwLock::default(),
                building: std::sync::Mutex::default(),
                cache,
                entities,
                stats: StatsRegistry::default(),
                denials,
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn AuthzStore> {
        &self.inner.store
    }

    fn loaded(&self, tenant: TenantId) -> Option<Arc<TenantEngine>> {
        self.inner.engines.read().unwrap_or_else(PoisonError::into_inner).get(&tenant).cloned()
    }

    /// The tenant's engine, built from the database when this process has none.
    pub async fn engine(&self, tenant: TenantId) -> Result<Arc<TenantEngine>, AuthzError> {
        if let Some(engine) = self.loaded(tenant) {
            return Ok(engine);
        }
        let lock =
            self.inner.building.lock().unwrap_or_else(PoisonError::into_inner).entry(tenant).or_default().clone();
        let _one_builder = lock.lock().await;
        if let Some(engine) = self.loaded(tenant) {
            return Ok(engine);
        }
        let engine = Arc::new(self.build(tenant).await?);
        self.inner.engines.write().unwrap_or_else(PoisonError::into_inner).insert(tenant, engine.clone());
        Ok(engine)
    }

    async fn build(&self, tenant: TenantId) -> Result<TenantEngine, AuthzError> {
        // The state is read first: a change committed while the rest is read leaves
        // the engine with an older version number, so the next poll rebuilds it.
        let state = self.inner.store.authz_state(tenant).await?;
        let snapshot = self.inner.store.policy_head(tenant).await?.map(|v| v.snapshot).unwrap_or_default();
        let compiled = match compile::compile(&snapshot) {
            Ok(compiled) => compiled,
            Err(error) => {
                // Stored versions were valid when written; a newer guard may judge
                // differently. Deciding with nothing denies everything but admins.
                tracing::error!(tenant = %tenant.0, %error, "the tenant's policies no longer compile; denying its decisions");
                compile::compile(&PolicySnapshot::default())?
            }
        };
        TenantEngine::new(tenant, state, compiled, self.inner.settings.user_cache_size)
    }

    /// Drops this process's engine of `tenant`; the next decision rebuilds it.
    pub fn invalidate(&self, tenant: TenantId) {
        self.inner.engines.write().unwrap_or_else(PoisonError::into_inner).remove(&tenant);
    }

    /// After this process changed what Cedar sees of `tenant`'s entities (stored
    /// entities, groups): decisions move to the new entity version at once, with the
    /// same compiled policies.
    async fn entities_changed(&self, tenant: TenantId) {
        match self.inner.store.authz_state(tenant).await {
            Ok(state) => {
                self.apply(tenant, state);
            }
            // The change is made; rebuilding is the safe way to see it.
            Err(_) => self.invalidate(tenant),
        }
    }

    /// Brings this process's engine of `tenant` to `state`: rebuilt (dropped) for a
    /// policy change, moved to the new entity version for an entity change.
    fn apply(&self, tenant: TenantId, state: super::model::AuthzState) -> bool {
        let Some(engine) = self.loaded(tenant) else { return false };
        if engine.policy_version != state.policy_version {
            self.invalidate(tenant);
            return true;
        }
        let moved = engine.state().entity_version < state.entity_version;
        engine.entities_at(state.entity_version);
        moved
    }

    /// The stored entities `prepared` needs, from the cache or the database.
    #[allow(clippy::result_large_err)]
    async fn slice(
        &self,
        engine: &TenantEngine,
        prepared: &Prepared,
        user: Option<&UserEntry>,
    ) -> Result<Result<cedar_policy::Entities, Issue>, AuthzError> {
        let state = engine.state();
        let mut builder = engine.slice_builder(prepared, user);
        loop {
            let wanted = builder.wanted();
            if wanted.is_empty() {
                return Ok(builder.finish());
            }
            let mut missing = Vec::new();
            for uid in wanted {
                let key = (engine.tenant, state.policy_version, state.entity_version, uid);
                match self.inner.entities.as_ref().and_then(|c| c.get(&key)) {
                    Some(found) => builder.supply(key.3, found),
                    None => missing.push(key.3),
                }
            }
            if missing.is_empty() {
                continue;
            }
            let keys: Vec<(String, String)> =
                missing.iter().map(|u| (u.type_name().to_string(), u.id().unescaped().to_owned())).collect();
            let mut rows: HashMap<(String, String), String> = self
                .inner
                .store
                .entities_by_uid(engine.tenant, &keys)
                .await?
                .into_iter()
                .map(|e| ((e.entity_type, e.entity_id), e.body))
                .collect();
            for (uid, key) in missing.into_iter().zip(keys) {
                let found = rows.remove(&key).and_then(|body| {
                    let parsed = serde_json::from_str(&body)
                        .map_err(|e| Issue::new("entity", e.to_string()))
                        .and_then(|json| LoadedEntity::parse(json, engine.schema.as_ref()));
                    match parsed {
                        Ok(entity) => Some(Arc::new(entity)),
                        Err(issue) => {
                            tracing::error!(tenant = %engine.tenant.0, entity = %uid, error = %issue.message, "a stored entity does not load; deciding without it");
                            None
                        }
                    }
                });
                if let Some(cache) = &self.inner.entities {
                    cache.insert(
                        (engine.tenant, state.policy_version, state.entity_version, uid.clone()),
                        found.clone(),
                    );
                }
                builder.supply(uid, found);
            }
        }
    }

    /// Brings engines whose tenant changed at or after `since_us` in any process up
    /// to date (see [`Authz::apply`]); returns how many changed.
    pub async fn refresh(&self, since_us: i64) -> Result<usize, StoreError> {
        let changes = self.inner.store.authz_changes(since_us).await?;
        let mut changed = 0;
        for (tenant, state) in changes {
            changed += usize::from(self.apply(tenant, state));
        }
        Ok(changed)
    }

    /// Polls for changes made by other processes every `interval` until `stop`.
    pub async fn run_refresher(self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        // A change commits a little after it stamps its time; look back far enough.
        let overlap = i64::try_from((interval * 4).as_micros()).unwrap_or(i64::MAX).max(5_000_000);
        let mut since = now_us() - overlap;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            let started = now_us();
            match self.refresh(since).await {
                Ok(_) => since = started - overlap,
                Err(error) => tracing::warn!(%error, "could not poll for authorization changes"),
            }
        }
    }

    async fn user_entry(&self, engine: &TenantEngine, user: Uuid) -> Result<Option<Arc<UserEntry>>, AuthzError> {
        if let Some(entry) = engine.cached_user(user) {
            return Ok(Some(entry));
        }
        match self.inner.store.user_facts(engine.tenant, user).await? {
            Some(facts) => Ok(Some(engine.add_user(&facts)?)),
            None => Ok(None),
        }
    }

    /// Decides guard's own `action` for `user` of `tenant`. Denials are audited.
    pub async fn permits(&self, tenant: TenantId, user: Uuid, action: &str) -> Result<Decision, AuthzError> {
        let engine = self.engine(tenant).await?;
        let key = format!("admin\0{}\0{:?}\0{user}\0{action}", tenant.0, engine.state());
        if let Some(hit) = self.inner.cache.as_ref().and_then(|c| c.get(&key)) {
            self.audit_denied(tenant, Actor::User(user), &hit, &format!("{}::\"{user}\"", user_type()), action, "");
            return Ok((*hit).clone());
        }
        let decision = match self.user_entry(&engine, user).await? {
            Some(entry) => engine.decide_admin(&entry, user, action)?,
            None => Decision { decision: "deny", reasons: Vec::new(), errors: Vec::new() },
        };
        let decision = Arc::new(decision);
        if let Some(cache) = &self.inner.cache {
            cache.insert(key, decision.clone());
        }
        self.audit_denied(tenant, Actor::User(user), &decision, &format!("{}::\"{user}\"", user_type()), action, "");
        Ok((*decision).clone())
    }

    /// What `caller` lacks to take control of `target`'s account (reset its password
    /// or second factors, unlock, disable, delete or change it): every action of
    /// guard's API the target could use were the account active, and `users.roles`
    /// when the target holds any role, since controlling the account hands over its
    /// roles. Empty: the caller may. Neither cached nor audited when empty; a refusal
    /// is audited as a denial of `users.write` on the target.
    pub async fn control_shortfall(
        &self,
        tenant: TenantId,
        caller: Uuid,
        target: Uuid,
    ) -> Result<Vec<&'static str>, AuthzError> {
        if caller == target {
            return Ok(Vec::new());
        }
        let engine = self.engine(tenant).await?;
        let Some(facts) = self.inner.store.user_facts(tenant, target).await? else { return Ok(Vec::new()) };
        // A locked or disabled account loses its rights only until someone who
        // controls it makes it active again.
        let potential = super::model::UserFacts { status: "active".to_owned(), ..facts };
        let target_entry = engine.user_entry(&potential)?;
        let caller_entry = self.user_entry(&engine, caller).await?;
        let caller_may = |action: &str| -> Result<bool, AuthzError> {
            Ok(match &caller_entry {
                Some(entry) => engine.decide_admin(entry, caller, action)?.allowed(),
                None => false,
            })
        };
        let mut missing = Vec::new();
        for (action, _) in builtin::ADMIN_ACTIONS {
            if engine.decide_admin(&target_entry, target, action)?.allowed() && !caller_may(action)? {
                missing.push(*action);
            }
        }
        if !potential.roles.is_empty() && !missing.contains(&"users.roles") && !caller_may("users.roles")? {
            missing.push("users.roles");
        }
        if !missing.is_empty() {
            let refusal = Decision {
                decision: "deny",
                reasons: missing.iter().map(|a| (*a).to_owned()).collect(),
                errors: Vec::new(),
            };
            let principal = format!("{}::\"{caller}\"", user_type());
            let resource = format!("{}::\"{target}\"", user_type());
            self.audit_denied(tenant, Actor::User(caller), &refusal, &principal, "users.write", &resource);
        }
        Ok(missing)
    }

    fn audit_denied(
        &self,
        tenant: TenantId,
        actor: Actor,
        d: &Decision,
        principal: &str,
        action: &str,
        resource: &str,
    ) {
        let sample = self.inner.settings.audit_allowed_sample;
        let target = format!("{principal} {action} {resource}").trim_end().to_owned();
        let (kind, repeats) = if d.allowed() {
            if sample <= 0.0 || (sample < 1.0 && rand_unit() >= sample) {
                return;
            }
            ("authz.permission.granted", 0)
        } else {
            match self.inner.denials.record(tenant, &actor, &target) {
                Some(repeats) => ("authz.permission.denied", repeats),
                None => return,
            }
        };
        let event = Event::success(kind, actor)
            .tenant(tenant.0)
            .target(target)
            .outcome(if d.allowed() { Outcome::Success } else { Outcome::Denied })
            .details(json!({
                "principal": principal, "action": action, "resource": resource,
                "reasons": d.reasons, "errors": d.errors.len(),
                "repeats_before": repeats,
            }));
        let events = self.inner.events.clone();
        tokio::spawn(async move { events.emit(event).await });
    }

    /// Decides applications' requests in order. `caller` is the signed-in user, who
    /// stands in for a missing principal. A malformed request fails the whole call
    /// (nothing is decided) with the index of the request named.
    pub async fn authorize(
        &self,
        tenant: TenantId,
        caller: Option<Uuid>,
        actor: Actor,
        requests: &[Value],
    ) -> Result<Vec<Decision>, AuthzError> {
        if requests.len() > MAX_BATCH {
            return Err(AuthzError::BadRequest(format!("at most {MAX_BATCH} requests per batch")));
        }
        let engine = self.engine(tenant).await?;
        let stats = self.inner.stats.of(tenant);
        let deadline = Instant::now() + self.inner.settings.eval_timeout;
        let mut decisions = Vec::with_capacity(requests.len());
        for (index, raw) in requests.iter().enumerate() {
            let started = Instant::now();
            let located = |mut issue: Issue| {
                if requests.len() > 1 {
                    issue.message = format!("request {index}: {}", issue.message);
                }
                AuthzError::invalid(
                    if requests.len() > 1 {
                        format!("request {index} is not valid")
                    } else {
                        "the request is not valid".into()
                    },
                    vec![issue],
                )
            };
            let input = DecisionInput::deserialize(raw).map_err(|e| located(Issue::new("request", e.to_string())))?;
            // Large requests are decided every time, so that the cache's memory stays
            // bounded by its entry count.
            let key = self.inner.cache.as_ref().map(|_| {
                let caller_part = match (&input.principal, caller) {
                    (None, Some(c)) => c.to_string(),
                    _ => String::new(),
                };
                format!("app\0{}\0{:?}\0{caller_part}\0{raw}", tenant.0, engine.state())
            });
            let key = key.filter(|k| k.len() <= MAX_CACHED_KEY);
            if let Some(hit) = self.inner.cache.as_ref().zip(key.as_ref()).and_then(|(c, k)| c.get(k)) {
                self.decided(tenant, &stats, &actor, &hit, &input, caller, true, started);
                decisions.push((*hit).clone());
                continue;
            }
            let prepared = engine.prepare(&input, caller).map_err(located)?;
            let user = if prepared.principal().type_name().to_string() == user_type() {
                let written = prepared.principal().id().unescaped();
                match Uuid::parse_str(written) {
                    // Another spelling of a user's id would be another entity to
                    // Cedar, without the user's roles and groups.
                    Ok(id) if id.to_string() != written => {
                        return Err(located(Issue::new(
                            "request",
                            format!("principal: write the user id as {id} (lower case, with hyphens)"),
                        )));
                    }
                    Ok(id) => self.user_entry(&engine, id).await?,
                    Err(_) => None,
                }
            } else {
                None
            };
            let entities = self.slice(&engine, &prepared, user.as_deref()).await?.map_err(located)?;
            let limit = deadline.saturating_duration_since(started);
            let decision = Arc::new(engine.decide(&prepared, &entities, limit));
            if decision.errors.iter().all(|e| !e.policy.is_empty())
                && let (Some(cache), Some(key)) = (&self.inner.cache, key)
            {
                cache.insert(key, decision.clone());
            }
            self.decided(tenant, &stats, &actor, &decision, &input, caller, false, started);
            decisions.push((*decision).clone());
        }
        Ok(decisions)
    }

    #[allow(clippy::too_many_arguments)]
    fn decided(
        &self,
        tenant: TenantId,
        stats: &super::stats::DecisionStats,
        actor: &Actor,
        decision: &Decision,
        input: &DecisionInput,
        caller: Option<Uuid>,
        cached: bool,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        stats.decided(decision.allowed(), cached, elapsed);
        metrics::counter!("guard_policy_evaluations_total", "decision" => decision.decision).increment(1);
        metrics::histogram!("guard_authorization_duration_seconds").record(elapsed.as_secs_f64());
        if cached {
            metrics::counter!("guard_authorization_cache_hits_total").increment(1);
        } else {
            metrics::counter!("guard_authorization_cache_misses_total").increment(1);
        }
        if !decision.allowed() || self.inner.settings.audit_allowed_sample > 0.0 {
            let principal = input.principal.as_ref().map_or_else(
                || caller.map(|c| format!("{}::\"{c}\"", user_type())).unwrap_or_default(),
                super::engine::uid_text,
            );
            let action = super::engine::uid_text(&input.action);
            let resource = super::engine::uid_text(&input.resource);
            self.audit_denied(tenant, actor.clone(), decision, &principal, &action, &resource);
        }
    }

    /// This process's decision figures by tenant.
    pub fn stats(&self) -> Vec<(TenantId, StatsReport)> {
        self.inner.stats.reports()
    }

    /// Share of decisions answered from the cache so far, in this process.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        let (hits, lookups) = self.inner.stats.cache_totals();
        (lookups > 0).then(|| hits as f64 / lookups as f64)
    }

    // ---- policies ----

    /// The current version number and snapshot (version 0 and nothing at first).
    pub async fn current(&self, tenant: TenantId) -> Result<(i64, PolicySnapshot), AuthzError> {
        Ok(match self.inner.store.policy_head(tenant).await? {
            Some(head) => (head.version, head.snapshot),
            None => (0, PolicySnapshot::default()),
        })
    }

    /// Checks a snapshot as a change would: the schema, every policy, and the stored
    /// entities against the schema.
    pub async fn validate(&self, tenant: TenantId, snapshot: &PolicySnapshot) -> Result<(), AuthzError> {
        let compiled = compile::compile(snapshot)?;
        if let Some(schema) = &compiled.schema {
            // A page at a time, so that a large tenant is never in memory at once.
            let mut issues = Vec::new();
            let mut after: Option<(String, String)> = None;
            loop {
                let page = self
                    .inner
                    .store
                    .entities_page(tenant, None, after.as_ref().map(|(t, i)| (t.as_str(), i.as_str())), 1000)
                    .await?;
                let full = page.len() == 1000;
                for entity in &page {
                    let body: Value = serde_json::from_str(&entity.body).unwrap_or(Value::Null);
                    if let Err(e) = cedar_policy::Entity::from_json_value(body, Some(schema))
                        && issues.len() < 100
                    {
                        issues.push(
                            issue_from("entity", &e, None)
                                .entity(format!("{}::{:?}", entity.entity_type, entity.entity_id)),
                        );
                    }
                }
                match page.last() {
                    Some(last) if full => after = Some((last.entity_type.clone(), last.entity_id.clone())),
                    _ => break,
                }
            }
            if !issues.is_empty() {
                return Err(AuthzError::invalid("stored entities do not fit the schema", issues));
            }
        }
        Ok(())
    }

    /// Applies `edit` to the current snapshot and stores the result as the next
    /// version, if it validates. `expected` refuses the change unless the current
    /// version is that one. An edit that changes nothing writes nothing.
    pub async fn change(
        &self,
        tenant: TenantId,
        actor: Actor,
        description: &str,
        expected: Option<i64>,
        edit: impl Fn(&mut PolicySnapshot) -> Result<(), AuthzError>,
    ) -> Result<PolicyVersion, AuthzError> {
        for _ in 0..5 {
            let head = self.inner.store.policy_head(tenant).await?;
            let (version, current) =
                head.as_ref().map_or((0, PolicySnapshot::default()), |h| (h.version, h.snapshot.clone()));
            if let Some(expected) = expected
                && expected != version
            {
                return Err(AuthzError::Conflict(format!(
                    "the policies are at version {version}, not {expected}; read them again and retry"
                )));
            }
            let mut next = current.clone();
            edit(&mut next)?;
            if next == current
                && let Some(head) = head
            {
                return Ok(head);
            }
            self.check_caps(&current, &next)?;
            self.validate(tenant, &next).await?;
            let written = PolicyVersion {
                tenant,
                version: version + 1,
                created_at: crate::stored_now(),
                actor: actor_label(&actor),
                change: description.to_owned(),
                snapshot: next,
            };
            let record = self.inner.events.record(
                &Event::success("authz.policies.changed", actor.clone())
                    .tenant(tenant.0)
                    .target(format!("version {}", written.version))
                    .details(json!({ "change": description, "version": written.version, "policies": written.snapshot.policies.len() })),
            );
            if self.inner.store.write_policy_version(&written, &record).await? {
                self.inner.events.committed(&record);
                self.invalidate(tenant);
                return Ok(written);
            }
        }
        Err(AuthzError::Conflict("the policies kept changing underneath; retry".into()))
    }

    /// Refuses a change that leaves the tenant over a cap it was not already over
    /// (a tenant over a lowered cap may still shrink).
    fn check_caps(&self, current: &PolicySnapshot, next: &PolicySnapshot) -> Result<(), AuthzError> {
        let settings = &self.inner.settings;
        let bytes = |s: &PolicySnapshot| s.policies.values().map(String::len).sum::<usize>();
        let (count, size) = (next.policies.len(), bytes(next));
        let mut issues = Vec::new();
        if count > settings.max_policies && count > current.policies.len() {
            issues.push(Issue::new(
                "policy",
                format!(
                    "the tenant would hold {count} policies; at most {} are allowed (AUTHZ_MAX_POLICIES)",
                    settings.max_policies
                ),
            ));
        }
        if size > settings.max_policy_bytes && size > bytes(current) {
            issues.push(Issue::new(
                "policy",
                format!(
                    "the tenant's policies would hold {size} bytes of text; at most {} are allowed (AUTHZ_MAX_POLICY_BYTES)",
                    settings.max_policy_bytes
                ),
            ));
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(AuthzError::invalid("the policies are over the tenant's limits", issues))
        }
    }

    pub async fn put_policy(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: &str,
        text: &str,
    ) -> Result<PolicyVersion, AuthzError> {
        check_policy_id(id)?;
        // Leading lines stay, so that positions in errors match what was sent.
        let text = text.trim_end().to_owned();
        self.change(tenant, actor, &format!("put policy {id}"), None, |s| {
            s.policies.insert(id.to_owned(), text.clone());
            Ok(())
        })
        .await
    }

    /// Adds a policy; `Conflict` when the id is taken (checked in the change itself).
    pub async fn create_policy(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: &str,
        text: &str,
    ) -> Result<PolicyVersion, AuthzError> {
        check_policy_id(id)?;
        let text = text.trim_end().to_owned();
        self.change(tenant, actor, &format!("create policy {id}"), None, |s| {
            if s.policies.contains_key(id) {
                return Err(AuthzError::Conflict(format!("a policy {id:?} exists; PUT /v1/policies/{id} replaces it")));
            }
            s.policies.insert(id.to_owned(), text.clone());
            Ok(())
        })
        .await
    }

    pub async fn delete_policy(&self, tenant: TenantId, actor: Actor, id: &str) -> Result<PolicyVersion, AuthzError> {
        self.change(tenant, actor, &format!("delete policy {id}"), None, |s| {
            s.policies.remove(id).map(|_| ()).ok_or_else(|| AuthzError::NotFound(format!("no policy {id:?}")))
        })
        .await
    }

    /// Sets (or with `None` removes) the schema.
    pub async fn put_schema(
        &self,
        tenant: TenantId,
        actor: Actor,
        schema: Option<String>,
    ) -> Result<PolicyVersion, AuthzError> {
        let what = if schema.is_some() { "put schema" } else { "remove schema" };
        self.change(tenant, actor, what, None, |s| {
            s.schema = schema.clone();
            Ok(())
        })
        .await
    }

    /// Replaces every policy and the schema at once.
    pub async fn replace(
        &self,
        tenant: TenantId,
        actor: Actor,
        snapshot: PolicySnapshot,
        expected: Option<i64>,
        description: &str,
    ) -> Result<PolicyVersion, AuthzError> {
        self.replace_keeping(tenant, actor, snapshot.policies, Some(snapshot.schema), expected, description).await
    }

    /// Replaces every policy; the schema too when `schema` is given (`Some(None)`
    /// removes it), otherwise the current one stays, whatever it is when the change
    /// is written.
    pub async fn replace_keeping(
        &self,
        tenant: TenantId,
        actor: Actor,
        policies: std::collections::BTreeMap<String, String>,
        schema: Option<Option<String>>,
        expected: Option<i64>,
        description: &str,
    ) -> Result<PolicyVersion, AuthzError> {
        for id in policies.keys() {
            check_policy_id(id)?;
        }
        self.change(tenant, actor, description, expected, |s| {
            s.policies = policies.clone();
            if let Some(schema) = &schema {
                s.schema = schema.clone();
            }
            Ok(())
        })
        .await
    }

    /// Makes `version`'s policies and schema current again, as a new version.
    pub async fn rollback(&self, tenant: TenantId, actor: Actor, version: i64) -> Result<PolicyVersion, AuthzError> {
        let target = self.version(tenant, version).await?;
        self.replace(tenant, actor, target.snapshot, None, &format!("rollback to version {version}")).await
    }

    pub async fn version(&self, tenant: TenantId, version: i64) -> Result<PolicyVersion, AuthzError> {
        self.inner
            .store
            .policy_version(tenant, version)
            .await?
            .ok_or_else(|| AuthzError::NotFound(format!("no policy version {version}")))
    }

    pub async fn versions(
        &self,
        tenant: TenantId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PolicyVersion>, AuthzError> {
        Ok(self.inner.store.policy_versions(tenant, before, limit.clamp(1, 1000)).await?)
    }

    pub async fn heads(&self) -> Result<Vec<PolicyHead>, AuthzError> {
        Ok(self.inner.store.policy_heads().await?)
    }

    // ---- entities ----

    /// Creates or replaces entities (Cedar entity JSON, an array), checked against
    /// the schema; all or nothing.
    pub async fn upsert_entities(&self, tenant: TenantId, actor: Actor, entities: &Value) -> Result<usize, AuthzError> {
        let Some(items) = entities.as_array() else {
            return Err(AuthzError::BadRequest("entities: expected an array of Cedar entities".into()));
        };
        if items.is_empty() || items.len() > MAX_UPSERT {
            return Err(AuthzError::BadRequest(format!("entities: send 1 to {MAX_UPSERT} entities")));
        }
        let engine = self.engine(tenant).await?;
        let mut stored = Vec::with_capacity(items.len());
        let mut issues = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match Entities::from_json_value(Value::Array(vec![item.clone()]), engine.schema.as_ref()) {
                Ok(parsed) => {
                    // Parsing with a schema adds the schema's actions; keep the entity sent.
                    let sent = item.get("uid").cloned().and_then(|u| cedar_policy::EntityUid::from_json(u).ok());
                    for entity in parsed.iter().filter(|e| sent.as_ref() == Some(&e.uid())) {
                        let uid = entity.uid();
                        if uid.type_name().namespace() == builtin::NAMESPACE {
                            issues.push(Issue::new("entity", format!("entity {index}: {uid} belongs to guard; manage users, groups and roles through their own API")).entity(uid.to_string()));
                            continue;
                        }
                        let body = entity.to_json_value().map_err(|e| AuthzError::BadRequest(e.to_string()))?;
                        stored.push(StoredEntity {
                            entity_type: uid.type_name().to_string(),
                            entity_id: uid.id().unescaped().to_owned(),
                            body: body.to_string(),
                        });
                    }
                }
                Err(e) => {
                    let mut issue = issue_from("entity", &e, None);
                    issue.message = format!("entity {index}: {}", issue.message);
                    issues.push(issue);
                }
            }
        }
        if !issues.is_empty() {
            return Err(AuthzError::invalid("an entity is not valid", issues));
        }
        // With what is stored, the entities must still load: a loop of parents goes
        // through a new entity, so the new ones with all their stored ancestors
        // (newer versions replacing stored ones) show it.
        let mut set: HashMap<(String, String), Value> = HashMap::new();
        let mut frontier = Vec::new();
        for entity in &stored {
            let body: Value = serde_json::from_str(&entity.body).unwrap_or(Value::Null);
            frontier.extend(parent_keys(&body));
            set.insert((entity.entity_type.clone(), entity.entity_id.clone()), body);
        }
        let mut looked: std::collections::HashSet<(String, String)> = set.keys().cloned().collect();
        while !frontier.is_empty() {
            let wanted: Vec<(String, String)> = frontier.drain(..).filter(|k| looked.insert(k.clone())).collect();
            if wanted.is_empty() {
                break;
            }
            for found in self.inner.store.entities_by_uid(tenant, &wanted).await? {
                let body: Value = serde_json::from_str(&found.body).unwrap_or(Value::Null);
                frontier.extend(parent_keys(&body));
                set.insert((found.entity_type, found.entity_id), body);
            }
        }
        if let Err(e) = Entities::from_json_value(Value::Array(set.into_values().collect()), engine.schema.as_ref()) {
            return Err(AuthzError::invalid(
                "with the stored entities, these do not load",
                vec![issue_from("entity", &e, None)],
            ));
        }
        let record = self.inner.events.record(
            &Event::success("authz.entities.upserted", actor)
                .tenant(tenant.0)
                .details(json!({ "count": stored.len() })),
        );
        self.inner.store.upsert_entities(tenant, &stored, &record).await?;
        self.inner.events.committed(&record);
        self.entities_changed(tenant).await;
        Ok(stored.len())
    }

    pub async fn delete_entity(
        &self,
        tenant: TenantId,
        actor: Actor,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<(), AuthzError> {
        let record = self.inner.events.record(
            &Event::success("authz.entity.deleted", actor)
                .tenant(tenant.0)
                .target(format!("{entity_type}::{entity_id:?}")),
        );
        if !self.inner.store.delete_entity(tenant, entity_type, entity_id, &record).await? {
            return Err(AuthzError::NotFound(format!("no entity {entity_type}::{entity_id:?}")));
        }
        self.inner.events.committed(&record);
        self.entities_changed(tenant).await;
        Ok(())
    }

    // ---- groups and roles ----

    pub async fn create_group(
        &self,
        tenant: TenantId,
        actor: Actor,
        name: &str,
        description: Option<String>,
    ) -> Result<Group, AuthzError> {
        check_name("group", name)?;
        let group = Group {
            id: Uuid::now_v7(),
            tenant,
            name: name.to_owned(),
            description,
            created_at: crate::stored_now(),
            members: 0,
        };
        let record =
            self.inner.events.record(&Event::success("group.created", actor).tenant(tenant.0).target(name.to_owned()));
        self.inner.store.create_group(&group, &record).await.map_err(|e| match e {
            StoreError::Conflict(_) => AuthzError::Conflict(format!("a group named {name:?} exists already")),
            other => other.into(),
        })?;
        self.inner.events.committed(&record);
        Ok(group)
    }

    pub async fn group(&self, tenant: TenantId, name: &str) -> Result<Group, AuthzError> {
        self.inner.store.group(tenant, name).await?.ok_or_else(|| AuthzError::NotFound(format!("no group {name:?}")))
    }

    pub async fn delete_group(&self, tenant: TenantId, actor: Actor, name: &str) -> Result<(), AuthzError> {
        let record =
            self.inner.events.record(&Event::success("group.deleted", actor).tenant(tenant.0).target(name.to_owned()));
        if !self.inner.store.delete_group(tenant, name, &record).await? {
            return Err(AuthzError::NotFound(format!("no group {name:?}")));
        }
        self.inner.events.committed(&record);
        self.entities_changed(tenant).await;
        Ok(())
    }

    /// Adds (`add`) or removes a user of the tenant; `false` when nothing changed.
    pub async fn set_member(
        &self,
        tenant: TenantId,
        actor: Actor,
        name: &str,
        user: Uuid,
        add: bool,
    ) -> Result<bool, AuthzError> {
        let group = self.group(tenant, name).await?;
        if self.inner.store.user_facts(tenant, user).await?.is_none() {
            return Err(AuthzError::NotFound("no such user in this tenant".into()));
        }
        let kind = if add { "group.member.added" } else { "group.member.removed" };
        let record = self.inner.events.record(
            &Event::success(kind, actor).tenant(tenant.0).target(name.to_owned()).details(json!({ "user": user })),
        );
        let changed = if add {
            self.inner.store.add_member(group.id, user, &record).await?
        } else {
            self.inner.store.remove_member(group.id, user, &record).await?
        };
        if changed {
            self.inner.events.committed(&record);
            self.entities_changed(tenant).await;
        }
        Ok(changed)
    }

    /// Built-in roles, then the tenant's own.
    pub async fn roles(&self, tenant: TenantId) -> Result<Vec<Role>, AuthzError> {
        let mut roles: Vec<Role> = BUILTIN_ROLES
            .iter()
            .map(|(name, description)| Role {
                name: (*name).to_owned(),
                description: Some((*description).to_owned()),
                builtin: true,
            })
            .collect();
        roles.extend(self.inner.store.roles(tenant).await?);
        Ok(roles)
    }

    pub async fn create_role(
        &self,
        tenant: TenantId,
        actor: Actor,
        name: &str,
        description: Option<String>,
    ) -> Result<Role, AuthzError> {
        check_name("role", name)?;
        if BUILTIN_ROLES.iter().any(|(n, _)| *n == name) {
            return Err(AuthzError::Conflict(format!("{name:?} is a built-in role")));
        }
        let role = Role { name: name.to_owned(), description, builtin: false };
        let record =
            self.inner.events.record(&Event::success("role.created", actor).tenant(tenant.0).target(name.to_owned()));
        self.inner.store.create_role(tenant, &role, &record).await.map_err(|e| match e {
            StoreError::Conflict(_) => AuthzError::Conflict(format!("a role named {name:?} exists already")),
            other => other.into(),
        })?;
        self.inner.events.committed(&record);
        Ok(role)
    }

    pub async fn delete_role(&self, tenant: TenantId, actor: Actor, name: &str) -> Result<(), AuthzError> {
        if BUILTIN_ROLES.iter().any(|(n, _)| *n == name) {
            return Err(AuthzError::Conflict(format!("{name:?} is a built-in role and cannot be deleted")));
        }
        let record =
            self.inner.events.record(&Event::success("role.deleted", actor).tenant(tenant.0).target(name.to_owned()));
        let deleted = self.inner.store.delete_role(tenant, name, &record).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                AuthzError::Conflict(format!("users hold the role {name:?}; take it from them first"))
            }
            other => other.into(),
        })?;
        if !deleted {
            return Err(AuthzError::NotFound(format!("no role {name:?}")));
        }
        self.inner.events.committed(&record);
        Ok(())
    }
}

/// The (type, id) of each parent named in Cedar entity JSON.
fn parent_keys(body: &Value) -> Vec<(String, String)> {
    body.get("parents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| cedar_policy::EntityUid::from_json(p.clone()).ok())
        .map(|uid| (uid.type_name().to_string(), uid.id().unescaped().to_owned()))
        .collect()
}

/// A uniform number in [0, 1) for sampling.
fn rand_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 1.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_denials_are_counted_into_the_next_event() {
        let window = DenialWindow { window: Duration::from_millis(50), seen: Default::default() };
        let tenant = TenantId(Uuid::nil());
        assert_eq!(window.record(tenant, &Actor::Operator, "p a r"), Some(0));
        assert_eq!(window.record(tenant, &Actor::Operator, "p a r"), None);
        assert_eq!(window.record(tenant, &Actor::Operator, "p a r"), None);
        assert_eq!(window.record(tenant, &Actor::Operator, "p a other"), Some(0), "another denial is its own");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(window.record(tenant, &Actor::Operator, "p a r"), Some(2), "the two repeats are reported");
        let every = DenialWindow { window: Duration::ZERO, seen: Default::default() };
        assert_eq!(every.record(tenant, &Actor::Operator, "p a r"), Some(0));
        assert_eq!(every.record(tenant, &Actor::Operator, "p a r"), Some(0));
    }
}
