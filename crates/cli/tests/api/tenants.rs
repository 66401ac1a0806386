//! Tenants through `guard tenant …` and the tenant service, on both backends.

use guard_core::events::Actor;
use guard_core::tenants::{TenantService, TenantStatus};
use guard_testkit::{GuardCommand, TestApp, backend_test};
use serde_json::Value;

use crate::support::guard_with_database;

fn list(guard: &GuardCommand, extra: &[&str]) -> Value {
    let mut args = vec!["tenant", "list", "--format", "json"];
    args.extend_from_slice(extra);
    let output = guard.run(&args);
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn slugs(page: &Value) -> Vec<String> {
    page["tenants"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_owned()).collect()
}

backend_test!(tenants_are_created_listed_and_disabled_from_the_command_line, |backend| {
    let Some((guard, _url, _db)) = guard_with_database(backend).await else { return };

    let created = guard.run(&["tenant", "create", "Acme Corp"]);
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(created.status.success(), "{created:?}");
    assert!(stdout.starts_with("created tenant acme-corp (Acme Corp), id "), "{stdout}");

    let page = list(&guard, &[]);
    assert_eq!(slugs(&page), ["default", "acme-corp"], "the default tenant exists from the first command on");
    let acme = &page["tenants"][1];
    assert_eq!(acme["status"], "active");
    assert_eq!(acme["settings"]["password_min_length"], 8);
    assert!(page["next_cursor"].is_null());

    let again = guard.run(&["tenant", "create", "Acme Corporation", "--slug", "acme-corp"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"), "{again:?}");
    assert_eq!(slugs(&list(&guard, &[])).len(), 2, "a refused create changes nothing");

    let bad = guard.run(&["tenant", "create", "Bad", "--slug", "Not A Slug"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid tenant slug"), "{bad:?}");

    let disabled = guard.run(&["tenant", "disable", "acme-corp"]);
    assert!(disabled.status.success(), "{disabled:?}");
    let by_id = acme["id"].as_str().unwrap();
    assert!(guard.run(&["tenant", "disable", by_id]).status.success(), "by id, and disabling twice is fine");
    assert_eq!(list(&guard, &[])["tenants"][1]["status"], "disabled");

    let default = guard.run(&["tenant", "disable", "default"]);
    assert_eq!(default.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&default.stderr).contains("default tenant cannot be disabled"));
    let missing = guard.run(&["tenant", "disable", "nobody"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no tenant \"nobody\""));
});

backend_test!(tenant_lists_page_with_a_cursor, |backend| {
    let Some((guard, _url, _db)) = guard_with_database(backend).await else { return };
    for name in ["Tenant One", "Tenant Two", "Tenant Three"] {
        assert!(guard.run(&["tenant", "create", name]).status.success());
    }
    let first = list(&guard, &["--limit", "2"]);
    assert_eq!(slugs(&first), ["default", "tenant-one"]);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let second = list(&guard, &["--limit", "2", "--cursor", &cursor]);
    assert_eq!(slugs(&second), ["tenant-two", "tenant-three"]);
    assert!(second["next_cursor"].is_null());
});

backend_test!(the_default_tenant_is_created_once_even_by_concurrent_starts, |backend| {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let service = TenantService::new(app.state.db.tenants.clone(), app.state.audit.clone());
    let starts: Vec<_> = (0..5)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.ensure_default().await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let page = service.list(None, 100).await.unwrap();
    assert_eq!(page.tenants.iter().filter(|t| t.slug.as_str() == "default").count(), 1);

    let found = service.find("default").await.unwrap();
    assert_eq!(service.find(&found.id.to_string()).await.unwrap(), found, "found by slug and by id alike");
    assert_eq!(found.status, TenantStatus::Active);
    let created = service.create(Actor::Operator, "Round Trip", None).await.unwrap();
    assert_eq!(service.find("round-trip").await.unwrap(), created, "what is stored reads back equal");
});
