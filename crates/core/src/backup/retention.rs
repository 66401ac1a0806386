//! Which backups `guard backup prune` keeps: the newest of each of the last N days,
//! weeks and months that have a backup (as restic's and borg's `--keep-*` do).

use std::collections::BTreeSet;

use time::OffsetDateTime;

/// How many days, weeks and months keep a backup each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// The indexes of `times` to keep. The newest backup is always kept.
pub fn select_kept(times: &[OffsetDateTime], retention: Retention) -> BTreeSet<usize> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|a, b| times[*b].cmp(&times[*a]));
    let mut kept = BTreeSet::new();
    if let Some(newest) = order.first() {
        kept.insert(*newest);
    }
    let day = |t: OffsetDateTime| (t.year(), t.ordinal() as u32);
    let week = |t: OffsetDateTime| {
        let (year, week, _) = t.to_iso_week_date();
        (year, u32::from(week))
    };
    let month = |t: OffsetDateTime| (t.year(), u32::from(u8::from(t.month())));
    for (limit, bucket) in [
        (retention.daily, &day as &dyn Fn(OffsetDateTime) -> (i32, u32)),
        (retention.weekly, &week),
        (retention.monthly, &month),
    ] {
        let mut seen = BTreeSet::new();
        for &i in &order {
            if seen.len() >= limit as usize {
                break;
            }
            // Newest first: the first backup met in a bucket is that bucket's newest.
            if seen.insert(bucket(times[i].to_offset(time::UtcOffset::UTC))) {
                kept.insert(i);
            }
        }
    }
    kept
}
