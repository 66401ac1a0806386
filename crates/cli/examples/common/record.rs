//! One figure appended to the benchmark records, in the shape `guard-bench record`
//! writes: bench/report.sh sets `BENCH_RECORDS` (an absolute path to records.jsonl)
//! and `BACKEND`. Without `BENCH_RECORDS`, nothing is written. Shared by the
//! benchmark examples (`#[path = "common/record.rs"] mod record;`); not an example.

use std::io::Write as _;

/// Appends `{"kind":"value","id",..,"value","unit","how","backend","at"}` as one line.
/// A failure to write is reported on stderr and does not stop the benchmark.
pub fn value(id: &str, value: f64, unit: &str, how: &str) {
    let Some(path) = std::env::var_os("BENCH_RECORDS").filter(|p| !p.is_empty()) else { return };
    let backend = std::env::var("BACKEND").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "sqlite".to_owned());
    let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let line = serde_json::json!({
        "kind": "value", "id": id, "value": value, "unit": unit, "how": how, "backend": backend, "at": at,
    });
    let written =
        std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut file| writeln!(file, "{line}"));
    if let Err(e) = written {
        eprintln!("record {id}: cannot append to {}: {e}", std::path::Path::new(&path).display());
    }
}
