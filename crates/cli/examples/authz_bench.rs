//! In-process authorization figures, through guard's own engine: one decision with a
//! tenant of 100 policies and a few hundred entities, and a batch of 100, beside a
//! baseline of one trivial policy decided the same way in the same run. Prints JSON
//! lines. Also writes the tenant's policies, schema and entities as files for the
//! HTTP benchmarks (bench/authz.sh, and guard-bench's authorization scenarios, which
//! read `requests.json`: the 10,000 distinct requests decided here), and, with
//! `BENCH_RECORDS` set (bench/report.sh), appends its figures to the records.
//! With a third argument N, also writes a large tenant of N entities with the same
//! policies, as files of 1,000 entities (`large/entities-NNNN.json`, for PUT
//! /v1/entities) and its 10,000 requests (`large/requests.json`).
//!
//! Decisions load the entities they need as guard's service does (from memory here,
//! from the database there), and that loading is part of the time measured.
//!
//!   authz_bench [decisions] [out-dir] [large-entities]

// A benchmark: a setup that does not hold should stop it at once.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The allocator of the guard binary, so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use guard_core::authz::compile::compile;
use guard_core::authz::engine::{DecisionInput, TenantEngine};
use guard_core::authz::slice::{EntityUid, LoadedEntity};
use guard_core::authz::{AuthzState, PolicySnapshot};
use guard_core::tenants::TenantId;
use serde_json::{Value, json};

#[path = "common/record.rs"]
mod record;

const SCHEMA: &str = r#"namespace Bench {
  entity Team;
  entity User in [Team] { level: Long, department: String };
  entity Folder;
  entity Doc in [Folder] { owner: User, classification: Long, tags: Set<String> };
  action read, edit, share appliesTo { principal: [User], resource: [Doc], context: { mfa: Bool, hour: Long } };
}"#;

const USERS: usize = 200;
const TEAMS: usize = 20;
const FOLDERS: usize = 50;
const DOCS: usize = 300;

/// 100 policies of the kinds tenants write: team grants per folder, owner rules,
/// attribute conditions, context conditions, and forbids.
fn policies() -> PolicySnapshot {
    let mut snapshot = PolicySnapshot { schema: Some(SCHEMA.into()), ..Default::default() };
    for i in 0..FOLDERS {
        snapshot.policies.insert(
            format!("team-folder-{i}"),
            format!(
                "permit(principal in Bench::Team::\"t{}\", action in [Bench::Action::\"read\", Bench::Action::\"edit\"], resource in Bench::Folder::\"f{i}\");",
                i % TEAMS
            ),
        );
    }
    for i in 0..30 {
        snapshot.policies.insert(
            format!("level-{i}"),
            format!(
                "permit(principal, action == Bench::Action::\"read\", resource in Bench::Folder::\"f{i}\") when {{ principal.level >= resource.classification && principal.department == \"d{}\" }};",
                i % 5
            ),
        );
    }
    for i in 0..15 {
        snapshot.policies.insert(
            format!("tagged-{i}"),
            format!(
                "permit(principal, action == Bench::Action::\"share\", resource) when {{ resource.tags.contains(\"tag{i}\") && context.mfa }};"
            ),
        );
    }
    snapshot
        .policies
        .insert("owner".into(), "permit(principal, action, resource) when { resource.owner == principal };".into());
    snapshot.policies.insert(
        "night".into(),
        "forbid(principal, action == Bench::Action::\"edit\", resource) when { context.hour < 6 };".into(),
    );
    snapshot.policies.insert(
        "secret".into(),
        "forbid(principal, action, resource) when { resource.classification > 4 && !context.mfa };".into(),
    );
    snapshot.policies.insert(
        "no-share-f0".into(),
        "forbid(principal, action == Bench::Action::\"share\", resource in Bench::Folder::\"f0\");".into(),
    );
    snapshot.policies.insert(
        "team0-share".into(),
        "permit(principal in Bench::Team::\"t0\", action == Bench::Action::\"share\", resource);".into(),
    );
    assert_eq!(snapshot.policies.len(), 100);
    snapshot
}

fn entities() -> Vec<Value> {
    (0..TEAMS + FOLDERS + USERS + DOCS).map(|n| entity(n, USERS)).collect()
}

/// The n-th entity of a tenant with `users` users: teams, folders, users, then
/// documents (as many as asked for).
fn entity(n: usize, users: usize) -> Value {
    if n < TEAMS {
        return json!({ "uid": { "type": "Bench::Team", "id": format!("t{n}") }, "attrs": {}, "parents": [] });
    }
    if n < TEAMS + FOLDERS {
        let f = n - TEAMS;
        return json!({ "uid": { "type": "Bench::Folder", "id": format!("f{f}") }, "attrs": {}, "parents": [] });
    }
    if n < TEAMS + FOLDERS + users {
        let u = n - TEAMS - FOLDERS;
        return json!({
            "uid": { "type": "Bench::User", "id": format!("u{u}") },
            "attrs": { "level": (u % 6) as i64, "department": format!("d{}", u % 5) },
            "parents": [{ "type": "Bench::Team", "id": format!("t{}", u % TEAMS) }],
        });
    }
    let d = n - TEAMS - FOLDERS - users;
    json!({
        "uid": { "type": "Bench::Doc", "id": format!("doc{d}") },
        "attrs": {
            "owner": { "__entity": { "type": "Bench::User", "id": format!("u{}", d % users) } },
            "classification": (d % 6) as i64,
            "tags": [format!("tag{}", d % 20)],
        },
        "parents": [{ "type": "Bench::Folder", "id": format!("f{}", d % FOLDERS) }],
    })
}

/// The large tenant's n-th request: principals and documents spread over all of it.
fn large_request(n: usize, users: usize, docs: usize) -> Value {
    let actions = ["read", "edit", "share"];
    json!({
        "principal": { "type": "Bench::User", "id": format!("u{}", (n * 7919) % users) },
        "action": { "type": "Bench::Action", "id": actions[n % 3] },
        "resource": { "type": "Bench::Doc", "id": format!("doc{}", (n * 104_729) % docs) },
        "context": { "mfa": !n.is_multiple_of(4), "hour": (n % 24) as i64 },
    })
}

/// Writes a tenant of `total` entities (a tenth of them users) as files of 1,000.
fn write_large(dir: &std::path::Path, total: usize) {
    let users = (total / 10).max(1);
    let docs = total.saturating_sub(TEAMS + FOLDERS + users).max(1);
    std::fs::create_dir_all(dir).expect("large dir");
    let count = TEAMS + FOLDERS + users + docs;
    for (file, start) in (0..count).step_by(1000).enumerate() {
        let chunk: Vec<Value> = (start..(start + 1000).min(count)).map(|n| entity(n, users)).collect();
        std::fs::write(dir.join(format!("entities-{file:04}.json")), Value::Array(chunk).to_string()).expect("write");
    }
    let requests: Vec<Value> = (0..10_000).map(|n| large_request(n, users, docs)).collect();
    std::fs::write(dir.join("requests.json"), Value::Array(requests).to_string()).expect("write");
    std::fs::write(dir.join("one.json"), large_request(1, users, docs).to_string()).expect("write");
}

/// The n-th request of a fixed, varied sequence.
pub fn request(n: usize) -> Value {
    let actions = ["read", "edit", "share"];
    json!({
        "principal": { "type": "Bench::User", "id": format!("u{}", (n * 7) % USERS) },
        "action": { "type": "Bench::Action", "id": actions[n % 3] },
        "resource": { "type": "Bench::Doc", "id": format!("doc{}", (n * 13) % DOCS) },
        "context": { "mfa": !n.is_multiple_of(4), "hour": (n % 24) as i64 },
    })
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// A tenant's engine and its stored entities, parsed (as the service's entity cache
/// holds them once warm).
struct Tenant {
    engine: TenantEngine,
    stored: HashMap<EntityUid, Arc<LoadedEntity>>,
}

impl Tenant {
    fn decide(&self, input: &DecisionInput) -> bool {
        let prepared = self.engine.prepare(input, None).expect("valid request");
        let entities =
            self.engine.slice_with(&prepared, None, |uid| self.stored.get(uid).cloned()).expect("the slice loads");
        self.engine.decide(&prepared, &entities, Duration::from_secs(1)).allowed()
    }
}

fn measure(tenant: &Tenant, inputs: &[DecisionInput], rounds: usize) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(rounds);
    let mut allowed = 0;
    for n in 0..rounds {
        let input = &inputs[n % inputs.len()];
        let started = Instant::now();
        let decision = tenant.decide(input);
        times.push(started.elapsed());
        allowed += usize::from(decision);
    }
    times.sort();
    (times, allowed)
}

fn engine(snapshot: &PolicySnapshot, entities: Vec<Value>) -> Tenant {
    let compiled = compile(snapshot).expect("the benchmark's policies compile");
    let stored = entities
        .into_iter()
        .map(|e| LoadedEntity::parse(e, compiled.schema.as_ref()).expect("entity"))
        .map(|e| (e.uid(), Arc::new(e)))
        .collect();
    let engine = TenantEngine::new(TenantId(uuid::Uuid::nil()), AuthzState::default(), compiled, 16).expect("engine");
    Tenant { engine, stored }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let snapshot = policies();
    let stored = entities();
    if let Some(dir) = args.get(2) {
        let dir = std::path::Path::new(dir);
        std::fs::create_dir_all(dir).expect("out dir");
        let set: Vec<Value> = snapshot.policies.iter().map(|(id, text)| json!({ "id": id, "text": text })).collect();
        std::fs::write(dir.join("policies.json"), json!({ "policies": set, "schema": SCHEMA }).to_string())
            .expect("write");
        std::fs::write(dir.join("entities.json"), Value::Array(stored.clone()).to_string()).expect("write");
        let batch: Vec<Value> = (0..100).map(request).collect();
        std::fs::write(dir.join("batch.json"), json!({ "requests": batch }).to_string()).expect("write");
        std::fs::write(dir.join("one.json"), request(1).to_string()).expect("write");
        let requests: Vec<Value> = (0..10_000).map(request).collect();
        std::fs::write(dir.join("requests.json"), Value::Array(requests).to_string()).expect("write");
        if let Some(large) = args.get(3).and_then(|a| a.parse::<usize>().ok()).filter(|n| *n > 0) {
            write_large(&dir.join("large"), large);
        }
    }

    let inputs: Vec<DecisionInput> =
        (0..10_000).map(|n| serde_json::from_value(request(n)).expect("request shape")).collect();
    let tenant = engine(&snapshot, stored);

    let mut trivial = PolicySnapshot::default();
    trivial.policies.insert("all".into(), "permit(principal, action, resource);".into());
    let baseline = engine(&trivial, Vec::new());

    // Warm up both.
    measure(&tenant, &inputs, 20_000);
    measure(&baseline, &inputs, 20_000);
    let (base, _) = measure(&baseline, &inputs, rounds);
    let (times, allowed) = measure(&tenant, &inputs, rounds);
    println!(
        "{}",
        json!({
            "case": "decision, 100 policies, 570 entities, 10k distinct requests, uncached",
            "decisions": rounds, "allowed": allowed,
            "p50_us": percentile(&times, 0.5), "p95_us": percentile(&times, 0.95), "p99_us": percentile(&times, 0.99),
            "baseline_case": "one permit-all policy, no entities, same requests",
            "baseline_p50_us": percentile(&base, 0.5), "baseline_p99_us": percentile(&base, 0.99),
        })
    );
    let how = format!("authz_bench: {rounds} decisions, 100 policies, 570 entities, 10k distinct requests, uncached");
    record::value("authz.decision.p50", percentile(&times, 0.5), "µs", &how);
    record::value("authz.decision.p99", percentile(&times, 0.99), "µs", &how);
    record::value(
        "authz.baseline.p50",
        percentile(&base, 0.5),
        "µs",
        &format!("authz_bench: {rounds} decisions, one permit-all policy, no entities, same requests"),
    );

    // Batches of 100 distinct requests, decided one after another as the batch
    // endpoint does.
    let mut batches = Vec::new();
    for b in 0..(rounds / 100).clamp(100, 2000) {
        let started = Instant::now();
        for n in 0..100 {
            let input = &inputs[(b * 100 + n) % inputs.len()];
            let _ = tenant.decide(input);
        }
        batches.push(started.elapsed());
    }
    batches.sort();
    println!(
        "{}",
        json!({
            "case": "batch of 100 distinct requests, in process",
            "batches": batches.len(),
            "p50_ms": percentile(&batches, 0.5) / 1000.0, "p99_ms": percentile(&batches, 0.99) / 1000.0,
        })
    );
    let how = format!(
        "authz_bench: {} batches of 100 distinct requests, decided one after another, in process",
        batches.len()
    );
    record::value("authz.batch.p50", percentile(&batches, 0.5) / 1000.0, "ms", &how);
    record::value("authz.batch.p99", percentile(&batches, 0.99) / 1000.0, "ms", &how);
}
