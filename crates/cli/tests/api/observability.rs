//! The monitoring kit under deploy/ against a running guard: every metric that a
//! Grafana dashboard or a Prometheus rule names is one `guard serve` really exports,
//! and the operator jobs' outcomes reach the metrics of every replica.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use guard_testkit::backend_test;
use serde_json::Value;

use crate::support::guard_with_database;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// (file, expression) pairs.
type Queries = Vec<(String, String)>;

/// Every PromQL expression in the dashboards: panel targets, and the metric of
/// `label_values(METRIC, LABEL)` template variables (returned separately: its second
/// argument is a label, not a metric).
fn dashboard_queries() -> (Queries, Queries) {
    fn walk(value: &Value, file: &str, exprs: &mut Vec<(String, String)>, variables: &mut Vec<(String, String)>) {
        match value {
            Value::Object(fields) => {
                for (key, v) in fields {
                    match (key.as_str(), v) {
                        ("expr", Value::String(e)) if !e.trim().is_empty() => exprs.push((file.to_owned(), e.clone())),
                        ("query" | "definition", Value::String(q)) if q.contains("label_values(") => {
                            variables.push((file.to_owned(), q.clone()))
                        }
                        ("query", Value::Object(q)) => {
                            if let Some(Value::String(q)) = q.get("query")
                                && q.contains("label_values(")
                            {
                                variables.push((file.to_owned(), q.clone()));
                            }
                        }
                        _ => walk(v, file, exprs, variables),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, file, exprs, variables)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    let mut variables = Vec::new();
    let dir = deploy_dir().join("grafana/dashboards");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("deploy/grafana/dashboards").flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let text = std::fs::read_to_string(path).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        walk(&dashboard, &name, &mut exprs, &mut variables);
    }
    (exprs, variables)
}

/// `expr:` and `record:` entries of the Prometheus rule files, read line by line (the
/// files are plain YAML maps; a block scalar `expr: |` continues on deeper lines).
fn rule_files() -> (Queries, BTreeMap<String, String>) {
    let mut exprs = Vec::new();
    let mut records = BTreeMap::new();
    let dir = deploy_dir().join("prometheus/rules");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("deploy/prometheus/rules").flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml")) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut pending_record: Option<String> = None;
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let trimmed = line.trim_start().trim_start_matches("- ");
            let indent = line.len() - line.trim_start().len();
            if let Some(record) = trimmed.strip_prefix("record:") {
                pending_record = Some(record.trim().trim_matches(['"', '\'']).to_owned());
            }
            if let Some(rest) = trimmed.strip_prefix("expr:") {
                let rest = rest.trim();
                let expr = if rest.starts_with('|') || rest.starts_with('>') {
                    let mut body = Vec::new();
                    while i + 1 < lines.len() {
                        let next = lines[i + 1];
                        let deeper = next.len() - next.trim_start().len() > indent;
                        if !(deeper || next.trim().is_empty()) {
                            break;
                        }
                        body.push(next.trim());
                        i += 1;
                    }
                    body.join(" ")
                } else {
                    rest.trim_matches(['"', '\'']).to_owned()
                };
                exprs.push((name.clone(), expr.clone()));
                // `record` may come before or after `expr` in the same rule.
                if let Some(record) = pending_record.take() {
                    records.insert(record, expr);
                } else if let Some(record) = lines[i + 1..]
                    .iter()
                    .take_while(|l| !l.trim_start().starts_with("- "))
                    .find_map(|l| l.trim().strip_prefix("record:"))
                {
                    records.insert(record.trim().trim_matches(['"', '\'']).to_owned(), expr);
                }
            }
            i += 1;
        }
    }
    (exprs, records)
}

/// Operators and aggregations, which may be followed by `by (…)` rather than `(`.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "Inf",
    "NaN",
    "atan2",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];

/// The index of the quote that closes the string opening at `open` (past the end when
/// it is not closed); backslash escapes are skipped.
fn closing_quote(chars: &[char], open: usize) -> usize {
    let mut i = open + 1;
    while i < chars.len() && chars[i] != chars[open] {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i
}

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers, ranges and grouping clauses that are not functions, keywords or Grafana
/// variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // After by/without/on/ignoring/group_left/group_right, the next (...) holds labels.
    let mut labels_next = false;
    let mut depth_braces = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = closing_quote(&chars, i) + 1,
            '{' => {
                depth_braces += 1;
                i += 1;
            }
            '}' => {
                depth_braces -= 1;
                i += 1;
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                i += 1;
            }
            '(' if labels_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                labels_next = false;
                i += 1;
            }
            '$' => {
                // A Grafana variable: $name, ${name} or [[name]].
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_{}:".contains(chars[i])) {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let is_call = j < chars.len() && chars[j] == '(';
                if depth_braces > 0 {
                    // a label name inside a matcher
                } else if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&word.as_str()) {
                    // group_left may come without a label list: then what follows is
                    // an expression, not labels.
                    labels_next = is_call;
                } else if !(is_call
                    || KEYWORDS.contains(&word.as_str())
                    || start > 0 && chars[start - 1].is_ascii_digit())
                {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number or a duration such as 5m: its letters are not a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_come_out_of_promql_as_prometheus_reads_it() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(guard_http_request_duration_seconds_bucket{instance=~"$instance", route!="/metrics"}[$__rate_interval])))"#,
    );
    assert_eq!(names, BTreeSet::from(["guard_http_request_duration_seconds_bucket".to_owned()]));
    let names = metric_names(
        "sum(rate(guard_http_requests_total{status=~\"5..\"}[5m])) / ignoring(status) sum(rate(job:guard_http_requests:rate5m[5m])) > 0.05 and on(instance) up == 1 offset 1h",
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "guard_http_requests_total".to_owned(),
            "job:guard_http_requests:rate5m".to_owned(),
            "up".to_owned()
        ])
    );
    assert_eq!(
        metric_names("time() - max(guard_job_last_success_timestamp_seconds{name=\"backup\"}) > 26 * 3600"),
        BTreeSet::from(["guard_job_last_success_timestamp_seconds".to_owned()])
    );
    assert_eq!(
        metric_names("absent(nonexistent_metric) or vector(1e3)"),
        BTreeSet::from(["nonexistent_metric".to_owned()])
    );
    assert_eq!(
        metric_names("guard_x * on (instance) group_left topk(1, guard_y)"),
        BTreeSet::from(["guard_x".to_owned(), "guard_y".to_owned()])
    );
}

/// The label names each `metric{label op "value", …}` selector of an expression
/// matches on, as (metric, label) pairs.
fn matched_labels(expr: &str) -> BTreeSet<(String, String)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut pairs = BTreeSet::new();
    let mut i = 0;
    let mut word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = closing_quote(&chars, i);
            word.clear();
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else if c == '{' && !word.is_empty() && !word.starts_with(|c: char| c.is_ascii_digit()) {
            // name op "value" (, name op "value")* up to the closing brace
            let metric = std::mem::take(&mut word);
            i += 1;
            let mut label = String::new();
            while i < chars.len() && chars[i] != '}' {
                match chars[i] {
                    '"' | '\'' | '`' => i = closing_quote(&chars, i),
                    '=' | '!' | '~' if !label.is_empty() => {
                        pairs.insert((metric.clone(), std::mem::take(&mut label)));
                    }
                    ch if ch.is_ascii_alphanumeric() || ch == '_' => label.push(ch),
                    _ => {}
                }
                i += 1;
            }
        } else if !c.is_whitespace() || !word.is_empty() && chars.get(i + 1).is_some_and(|n| *n != '{') {
            word.clear();
        }
        i += 1;
    }
    pairs
}

#[test]
fn label_matchers_come_out_of_promql_with_their_metric() {
    let pairs = matched_labels(
        r#"sum by (route) (rate(guard_http_requests_total{instance=~"$instance", status=~"5..", route!="/x{y}"}[5m])) / on(instance) up{job="guard"} and vector(1)"#,
    );
    let expected = [
        ("guard_http_requests_total", "instance"),
        ("guard_http_requests_total", "route"),
        ("guard_http_requests_total", "status"),
        ("up", "job"),
    ];
    assert_eq!(pairs, expected.iter().map(|(m, l)| (m.to_string(), l.to_string())).collect());
    assert!(matched_labels("sum(rate(guard_x[5m]))").is_empty());
}

/// Label names each exported metric name carries in a Prometheus text exposition.
fn exported_labels(scrape: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else { continue };
        let Some((inside, _)) = rest.rsplit_once('}') else { continue };
        let names = inside.split("\",").filter_map(|pair| pair.split_once('=')).map(|(k, _)| k.trim().to_owned());
        labels.entry(name.to_owned()).or_default().extend(names);
    }
    labels
}

/// Metric names with samples in a Prometheus text exposition.
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Names a selector may use for a histogram or summary family.
fn family_of(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|base| {
                exported.contains(&format!("{base}_bucket")) || exported.contains(&format!("{base}_count"))
            })
        })
}

/// Scrapes until `ready` holds: serve exports the database-derived gauges from a task of
/// its own, which may run just after /health first answers.
async fn scrape_until(base: &str, ready: impl Fn(&str) -> bool) -> String {
    let started = std::time::Instant::now();
    loop {
        let scrape = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
        if ready(&scrape) || started.elapsed() > std::time::Duration::from_secs(20) {
            return scrape;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

backend_test!(every_metric_in_the_dashboards_and_rules_is_exported_by_a_running_guard, |backend| {
    let Some((cmd, _url, _db)) = guard_with_database(backend).await else { return };
    // Mail and audit delivery, so that their metrics have samples too.
    let Some(smtp) = guard_testkit::SmtpSink::start() else { return };
    let Some(collector) = guard_testkit::SyslogSink::start() else { return };
    let cmd = cmd
        .env("SMTP_URL", smtp.url())
        .env("AUDIT_DELIVERY_URL", collector.url())
        .env("GUARD_BOOTSTRAP_ADMIN_EMAIL", "admin@example.com")
        .env("GUARD_BOOTSTRAP_ADMIN_PASSWORD", crate::mfa::PASSWORD)
        .env("RATE_LIMIT_ENABLED", "true")
        .env("RATE_LIMIT_LOGIN", "2/1h,burst=2")
        .env("BACKUP_DIR", "backups");
    // The operator jobs, as a cron job runs them, before any replica starts; one backup
    // fails (its folder is a file).
    let ran = |args: &[&str]| {
        let out = cmd.run(args);
        assert!(out.status.success(), "guard {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ran(&["migrate", "up", "--no-backup"]);
    std::fs::write(cmd.dir().join("not-a-dir"), b"x").unwrap();
    assert!(!cmd.run(&["backup", "create", "not-a-dir"]).status.success());
    ran(&["backup", "create"]);
    ran(&["audit", "verify"]);
    ran(&["maintenance", "run"]);
    let mut guard = cmd.serve(&[]).await;
    let http = reqwest::Client::new();
    let base = guard.base.clone();
    let login = |password: &'static str| {
        http.post(format!("{base}/v1/auth/password/login"))
            .header("X-Tenant-ID", "default")
            .json(&serde_json::json!({ "email": "admin@example.com", "password": password }))
            .send()
    };
    // A sign-in, a failed one, and one over the limit; a refresh; decisions.
    let signed_in: Value = login(crate::mfa::PASSWORD).await.unwrap().json().await.unwrap();
    assert_eq!(login("not the password at all").await.unwrap().status(), 401);
    assert_eq!(login(crate::mfa::PASSWORD).await.unwrap().status(), 429);
    let refreshed = http
        .post(format!("{base}/v1/auth/token/refresh"))
        .header("X-Tenant-ID", "default")
        .json(&serde_json::json!({ "refresh_token": signed_in["refresh_token"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let session = signed_in["session_token"].as_str().unwrap();
    let decide = || {
        http.post(format!("{base}/v1/authorize"))
            .header("X-Tenant-ID", "default")
            .bearer_auth(session)
            .json(&serde_json::json!({
                "principal": { "type": "App::User", "id": "alice" },
                "action": { "type": "App::Action", "id": "read" },
                "resource": { "type": "App::Doc", "id": "d1" },
            }))
            .send()
    };
    for _ in 0..2 {
        let decided = decide().await.unwrap();
        assert_eq!(decided.status(), 200, "{}", decided.text().await.unwrap());
    }
    let reset = http
        .post(format!("{base}/v1/auth/password/reset/request"))
        .header("X-Tenant-ID", "default")
        .json(&serde_json::json!({ "email": "admin@example.com" }))
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success(), "{}", reset.status());
    let settled = ["guard_audit_chain_intact", "guard_email_sends_total{", "guard_audit_delivery_lag_seconds"];
    let scrape = scrape_until(&base, |s| settled.iter().all(|m| s.contains(m))).await;
    let exported = exported(&scrape);

    let (dashboard_exprs, variables) = dashboard_queries();
    let (rule_exprs, records) = rule_files();
    assert!(dashboard_exprs.len() >= 20, "only {} dashboard queries found", dashboard_exprs.len());
    assert!(rule_exprs.len() >= 10, "only {} rule expressions found", rule_exprs.len());
    let mut missing = Vec::new();
    let mut checked = BTreeSet::new();
    for (file, expr) in dashboard_exprs.iter().chain(&rule_exprs) {
        for name in metric_names(expr) {
            let resolves = if name.contains(':') {
                records.contains_key(&name)
            } else {
                name == "up" || family_of(&name, &exported)
            };
            if !resolves {
                missing.push(format!("{file}: {name} (in {expr})"));
            }
            checked.insert(name);
        }
    }
    // Each label a selector matches on is one the metric carries: a renamed or
    // misspelt label selects nothing, as surely as a misspelt metric. Prometheus adds
    // `instance` and `job` to every series it scrapes.
    let carried = exported_labels(&scrape);
    let mut labels_checked = 0;
    for (file, expr) in dashboard_exprs.iter().chain(&rule_exprs) {
        for (metric, label) in matched_labels(expr) {
            if metric.contains(':') || metric == "up" || ["instance", "job"].contains(&label.as_str()) {
                continue;
            }
            labels_checked += 1;
            let family = ["", "_bucket", "_count", "_sum"]
                .iter()
                .map(|suffix| metric.strip_suffix(suffix).unwrap_or(&metric))
                .flat_map(|base| [base.to_owned(), format!("{base}_bucket"), format!("{base}_count")]);
            if !family.clone().any(|name| carried.get(&name).is_some_and(|labels| labels.contains(&label))) {
                missing.push(format!("{file}: {metric} has no label {label} (in {expr})"));
            }
        }
    }
    assert!(labels_checked >= 10, "only {labels_checked} label matchers found");
    for (file, query) in &variables {
        let metric = query.split("label_values(").nth(1).and_then(|rest| rest.split([',', ')']).next()).unwrap_or("");
        // label_values(LABEL) without a metric names no metric.
        if query.contains(',') && !metric_names(metric).iter().all(|m| family_of(m, &exported)) {
            missing.push(format!("{file}: template variable {query}"));
        }
    }
    assert!(
        missing.is_empty(),
        "names no running guard exports ({backend:?}):\n{}\n\nexported:\n{}",
        missing.join("\n"),
        exported.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    // The kit covers each area the dashboards are for.
    for family in [
        "guard_http_requests_total",
        "guard_http_request_duration_seconds_bucket",
        "guard_http_requests_in_flight",
        "guard_auth_failures_total",
        "guard_mfa_verifications_total",
        "guard_rate_limit_hits_total",
        "guard_active_sessions",
        "guard_policy_evaluations_total",
        "guard_authorization_duration_seconds_bucket",
        "guard_database_connections",
        "process_resident_memory_bytes",
        "guard_job_last_success_timestamp_seconds",
        "guard_audit_chain_intact",
        "guard_certificate_expiry_timestamp_seconds",
    ] {
        assert!(checked.contains(family), "no dashboard or rule uses {family}");
    }

    // The jobs run above reached this replica's metrics.
    for job in ["backup", "audit_verify", "maintenance"] {
        let line = format!("guard_job_last_success_timestamp_seconds{{name=\"{job}\"}} ");
        let value: f64 = scrape
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in the scrape"))
            .trim()
            .parse()
            .unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        assert!(now - value < 300.0 && value <= now + 1.0, "{job} succeeded at {value}, now {now}");
    }
    assert!(scrape.lines().any(|l| l == "guard_audit_chain_intact 1"), "{scrape}");
    assert!(
        scrape.lines().any(|l| l.starts_with("guard_rate_limit_hits_total{")
            && l.contains("action=\"login\"")
            && l.ends_with(" 1")),
        "the refused sign-in is counted"
    );
    guard.terminate();
});

backend_test!(a_failed_backup_and_a_broken_audit_chain_show_in_the_metrics, |backend| {
    let Some((cmd, url, _db)) = guard_with_database(backend).await else { return };
    let run = |args: &[&str]| cmd.run(args);
    let out = run(&["user", "create", "someone@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A backup into a path that is a file cannot be written.
    std::fs::write(cmd.dir().join("not-a-dir"), b"x").unwrap();
    assert!(!run(&["backup", "create", "not-a-dir"]).status.success(), "a backup into a file must fail");
    assert!(run(&["audit", "verify"]).status.success());
    let guard = cmd.serve(&[]).await;
    let scrape = scrape_until(&guard.base, |s| s.contains("guard_audit_chain_intact")).await;
    assert!(scrape.contains("guard_job_last_failure_timestamp_seconds{name=\"backup\"}"), "{scrape}");
    assert!(!scrape.contains("guard_job_last_success_timestamp_seconds{name=\"backup\"}"), "{scrape}");
    assert!(scrape.lines().any(|l| l == "guard_audit_chain_intact 1"), "{scrape}");
    drop(guard);

    // Someone edits a stored event: the next verification records the break.
    let tamper = "UPDATE audit_events SET result = 'failure' WHERE result = 'success'";
    let changed = match backend {
        guard_testkit::Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let n = sqlx::query(tamper).execute(&pool).await.unwrap().rows_affected();
            pool.close().await;
            n
        }
        guard_testkit::Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let n = sqlx::query(tamper).execute(&pool).await.unwrap().rows_affected();
            pool.close().await;
            n
        }
    };
    assert!(changed > 0, "no stored event to tamper with");
    assert!(!run(&["audit", "verify"]).status.success(), "verification must fail on a tampered log");
    let guard = cmd.serve(&[]).await;
    let scrape = scrape_until(&guard.base, |s| s.contains("guard_audit_chain_intact")).await;
    assert!(scrape.lines().any(|l| l == "guard_audit_chain_intact 0"), "{scrape}");
    assert!(scrape.contains("guard_job_last_failure_timestamp_seconds{name=\"audit_verify\"}"), "{scrape}");
    drop(guard);
});
