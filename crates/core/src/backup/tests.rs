use std::io::Cursor;

use time::macros::datetime;

use super::*;

fn manifest() -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        name: "t".into(),
        created_at: "2026-11-30T00:00:00Z".into(),
        guard_version: "0.0.0".into(),
        schema_version: 16,
        source_backend: "sqlite".into(),
        includes_secrets: false,
        excluded_tables: vec![],
        tables: vec![],
    }
}

fn sample_rows() -> Vec<Vec<Value>> {
    (0..2500i64)
        .map(|i| {
            vec![
                Value::Int(i),
                Value::Text(format!("user{i}@example.com")),
                if i % 3 == 0 { Value::Null } else { Value::Bytes(i.to_le_bytes().to_vec()) },
                Value::Real(i as f64 / 4.0),
            ]
        })
        .collect()
}

fn write_backup(path: &std::path::Path) -> Manifest {
    let mut writer = ArchiveWriter::create(path).unwrap();
    let mut table = writer.table("users", vec!["id".into(), "email".into(), "blob".into(), "x".into()]).unwrap();
    let mut chunk = Vec::new();
    for row in sample_rows() {
        for v in &row {
            v.encode(&mut chunk);
        }
    }
    table.write_rows(&chunk, 2500).unwrap();
    table.finish().unwrap();
    let empty = writer.table("empty", vec!["a".into()]).unwrap();
    empty.finish().unwrap();
    writer.finish(manifest()).unwrap()
}

#[test]
fn rows_round_trip_and_the_manifest_locates_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.guardbak");
    let written = write_backup(&path);
    let reader = ArchiveReader::open(&path).unwrap();
    assert_eq!(reader.manifest, written);
    assert_eq!(reader.manifest.rows(), 2500);
    reader.verify_checksums().unwrap();
    assert_eq!(reader.verify_rows(|_, _| {}).unwrap(), vec![("users".to_owned(), 2500), ("empty".to_owned(), 0)]);
    let mut rows = reader.rows(reader.manifest.table("users").unwrap()).unwrap();
    let mut row = Vec::new();
    let mut read = Vec::new();
    while rows.next_row(&mut row).unwrap() {
        read.push(row.clone());
    }
    assert_eq!(read, sample_rows());
}

#[test]
fn every_flipped_byte_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.guardbak");
    write_backup(&path);
    let original = std::fs::read(&path).unwrap();
    // Every byte of a small backup, flipped one at a time, fails open or a check.
    let step = (original.len() / 400).max(1);
    let mut positions: Vec<usize> = (0..original.len()).step_by(step).collect();
    positions.extend([0, 8, 12, original.len() - 1, original.len() - 33]);
    for at in positions {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        let flipped = dir.path().join("flipped.guardbak");
        std::fs::write(&flipped, &bytes).unwrap();
        let caught = match ArchiveReader::open(&flipped) {
            Err(_) => true,
            Ok(reader) => reader.verify_checksums().is_err(),
        };
        assert!(caught, "a flipped byte at {at} of {} went unnoticed", bytes.len());
    }
}

#[test]
fn a_cut_row_and_an_unknown_tag_are_errors() {
    let mut bytes = Vec::new();
    Value::Int(1).encode(&mut bytes);
    let mut reader = RowReader::new(Cursor::new(bytes), 2);
    assert!(reader.next_row(&mut Vec::new()).is_err());
    let mut reader = RowReader::new(Cursor::new(vec![9u8]), 1);
    assert!(reader.next_row(&mut Vec::new()).is_err());
}

#[test]
fn retention_keeps_the_newest_of_each_day_week_and_month() {
    // Two backups a day for 120 days, newest first at 2026-11-30.
    let newest = datetime!(2026-11-30 23:00 UTC);
    let times: Vec<_> = (0..240).map(|i| newest - time::Duration::hours(12 * i)).collect();
    let kept = select_kept(&times, Retention { daily: 7, weekly: 4, monthly: 12 });
    let kept_times: Vec<_> = kept.iter().map(|&i| times[i]).collect();
    // 7 days: the 23:00 backup of Nov 24..30.
    for d in 24..=30u8 {
        let t = time::Date::from_calendar_date(2026, time::Month::November, d)
            .unwrap()
            .with_hms(23, 0, 0)
            .unwrap()
            .assume_utc();
        assert!(kept_times.contains(&t), "the newest backup of Nov {d} is kept");
        let morning = t - time::Duration::hours(12);
        assert!(!kept_times.contains(&morning), "the older backup of Nov {d} is pruned");
    }
    // Months: the newest backup of each month back to August (the series starts in August).
    let first_of = times.iter().copied().filter(|t| t.month() == time::Month::August).max().unwrap();
    assert!(kept_times.contains(&first_of));
    // 4 ISO weeks (Monday to Sunday): Nov 30 alone, then the weeks ending Nov 29, 22 and 15.
    for d in [22u8, 15] {
        let t = time::Date::from_calendar_date(2026, time::Month::November, d)
            .unwrap()
            .with_hms(23, 0, 0)
            .unwrap()
            .assume_utc();
        assert!(kept_times.contains(&t), "the newest backup of the week ending Nov {d} is kept");
    }
    let nov8 = datetime!(2026-11-08 23:00 UTC);
    assert!(!kept_times.contains(&nov8), "a fifth week back is pruned");
    // 7 days, 2 more weeks, and the ends of October, September and August.
    assert_eq!(kept.len(), 12);
    assert!(select_kept(&times, Retention { daily: 0, weekly: 0, monthly: 0 }).len() == 1, "the newest is always kept");
}
