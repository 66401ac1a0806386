//! Audit records, the filters that select them, and the request context events carry.

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::events::{Event, Outcome};

/// The chain of events that belong to no tenant.
pub const PLATFORM: Uuid = Uuid::nil();

/// Where the request that caused an event came from; set by the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

tokio::task_local! {
    /// The request being served, for the events it causes.
    pub static REQUEST: std::sync::Arc<RequestContext>;
}

/// One stored event. `seq` and `hash` are set when the record is sealed into its
/// tenant's chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// UUIDv7: time-ordered.
    pub id: Uuid,
    /// The tenant, or [`PLATFORM`].
    pub tenant: Uuid,
    pub seq: Option<i64>,
    /// Microseconds since the Unix epoch.
    pub at_us: i64,
    pub kind: String,
    pub actor: String,
    pub target: Option<String>,
    pub result: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// JSON text, hashed exactly as stored.
    pub details: String,
    pub mac: Vec<u8>,
    pub hash: Option<Vec<u8>>,
}

impl AuditRecord {
    /// The unsealed, un-MACed record of `event`, with the current request's context.
    pub(crate) fn from_event(event: &Event) -> AuditRecord {
        let context = REQUEST.try_with(|c| RequestContext::clone(c)).unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        AuditRecord {
            id: Uuid::now_v7(),
            tenant: event.tenant.unwrap_or(PLATFORM),
            seq: None,
            at_us: (now.unix_timestamp_nanos() / 1000) as i64,
            kind: event.kind.to_owned(),
            actor: event.actor.label(),
            target: event.target.clone(),
            result: event.outcome.as_str().to_owned(),
            ip: context.ip,
            user_agent: context.user_agent,
            request_id: context.request_id,
            details: if event.details.is_null() { "{}".to_owned() } else { event.details.to_string() },
            mac: Vec::new(),
            hash: None,
        }
    }

    /// When the event happened.
    pub fn time(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at_us) * 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// RFC 3339 in UTC with microseconds always written, so that times sort as text.
    pub fn time_text(&self) -> String {
        let t = self.time();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        let details: Value = serde_json::from_str(&self.details).unwrap_or(Value::String(self.details.clone()));
        json!({
            "id": self.id,
            "time": self.time_text(),
            "tenant": (self.tenant != PLATFORM).then_some(self.tenant),
            "type": self.kind,
            "actor": self.actor,
            "target": self.target,
            "result": self.result,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "details": details,
            "seq": self.seq,
            "hash": self.hash.as_deref().map(hex),
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A chain's head and the anchor retention pruned it up to (seq 0: nothing pruned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    pub tenant: Uuid,
    pub last_seq: i64,
    pub last_hash: Vec<u8>,
    pub anchor_seq: i64,
    pub anchor_hash: Vec<u8>,
}

/// A signed statement that `tenant`'s chain had `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tenant: Uuid,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at_us: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// Which results a query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultFilter(pub Outcome);

impl ResultFilter {
    /// `success`, `failure`, `denied` or `error`.
    pub fn parse(text: &str) -> Option<ResultFilter> {
        [Outcome::Success, Outcome::Failure, Outcome::Denied, Outcome::Error]
            .into_iter()
            .find(|o| o.as_str() == text)
            .map(ResultFilter)
    }
}

/// Newest first (reviews) or oldest first (exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
    /// Sealed records only, in chain order (by tenant, then sequence), paged by
    /// [`AuditFilter::after_position`]: exports. Unlike a time order, a page boundary
    /// cannot pass over a record whose transaction commits late with an earlier time:
    /// it is sealed after the boundary, with a higher sequence.
    Chain,
}

/// A place in the chains: `tenant`'s record `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPosition {
    pub tenant: Uuid,
    pub seq: i64,
}

/// A position in a listing: the last record returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_us: i64,
    pub id: Uuid,
}

impl Cursor {
    /// The opaque wire form.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at_us, self.id.simple())
    }

    /// A cursor from its wire form.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (at, id) = text.split_once('.')?;
        Some(Cursor { at_us: at.parse().ok()?, id: Uuid::try_parse(id).ok()? })
    }
}

/// What a query selects. Times are microseconds since the epoch; `since` inclusive,
/// `until` exclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// One tenant's events (the platform's with [`PLATFORM`]); every tenant's when
    /// `None` (operators only).
    pub tenant: Option<Uuid>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// A LIKE pattern made by [`type_pattern`].
    pub kind_like: Option<String>,
    pub result: Option<ResultFilter>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub after: Option<Cursor>,
    /// With [`Order::Chain`]: the records after this position.
    pub after_position: Option<ChainPosition>,
    pub order: Order,
    pub limit: u32,
}

/// One page of records and the cursor for the next.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next: Option<Cursor>,
    /// With [`Order::Chain`]: where the next page starts.
    pub next_position: Option<ChainPosition>,
}

/// The LIKE pattern (escape `\`) of a type glob: `*` any run, `?` one character.
/// Types are dotted lower-case words; anything else is refused.
pub fn type_pattern(glob: &str) -> Result<String, String> {
    if glob.is_empty() || glob.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    let mut pattern = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => pattern.push('%'),
            '?' => pattern.push('_'),
            '_' => pattern.push_str("\\_"),
            'a'..='z' | '0'..='9' | '.' | '-' => pattern.push(c),
            other => {
                return Err(format!(
                    "{other:?} cannot appear in an event type pattern (lower-case letters, digits, '.', '_', '-', and the wildcards '*' and '?')"
                ));
            }
        }
    }
    Ok(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_globs_become_like_patterns_and_odd_characters_are_refused() {
        assert_eq!(type_pattern("auth.*").unwrap(), "auth.%");
        assert_eq!(type_pattern("auth.login.succes?").unwrap(), "auth.login.succes_");
        assert_eq!(type_pattern("mfa.recovery_codes.*").unwrap(), "mfa.recovery\\_codes.%");
        assert!(type_pattern("auth.%").is_err());
        assert!(type_pattern("").is_err());
        assert!(type_pattern("Auth'; --").is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor { at_us: 1_700_000_000_000_000, id: Uuid::now_v7() };
        assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::parse("12.not-a-uuid"), None);
        assert_eq!(Cursor::parse("abc"), None);
    }
}

/// A query's parameters as a person or client typed them; [`QueryParams::filter`]
/// checks each and names the one at fault.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    pub since: Option<String>,
    pub until: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub result: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

/// A query parameter that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidParam {
    pub name: &'static str,
    pub reason: String,
}

impl std::fmt::Display for InvalidParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.reason)
    }
}

impl QueryParams {
    /// The filter these parameters describe, for `tenant`, `default_limit` records a
    /// page unless `limit` says otherwise (1 to `max_limit`).
    pub fn filter(
        &self,
        tenant: Option<Uuid>,
        order: Order,
        default_limit: u32,
        max_limit: u32,
        now: OffsetDateTime,
    ) -> Result<AuditFilter, InvalidParam> {
        let bad = |name: &'static str, reason: String| InvalidParam { name, reason };
        let time = |name: &'static str, text: &Option<String>| -> Result<Option<i64>, InvalidParam> {
            text.as_deref()
                .map(|t| super::when::parse_time(t, now).map(|at| (at.unix_timestamp_nanos() / 1000) as i64))
                .transpose()
                .map_err(|reason| bad(name, reason))
        };
        let since_us = time("since", &self.since)?;
        let until_us = time("until", &self.until)?;
        if let (Some(since), Some(until)) = (since_us, until_us)
            && since >= until
        {
            return Err(bad("until", "must be later than since".into()));
        }
        let kind_like = self.kind.as_deref().map(type_pattern).transpose().map_err(|r| bad("type", r))?;
        let result = self
            .result
            .as_deref()
            .map(|r| {
                ResultFilter::parse(r)
                    .ok_or_else(|| bad("result", format!("{r:?} is not one of success, failure, denied, error")))
            })
            .transpose()?;
        let text = |name: &'static str, value: &Option<String>| -> Result<Option<String>, InvalidParam> {
            match value {
                Some(v) if v.is_empty() || v.len() > 256 => Err(bad(name, "must be 1 to 256 characters".into())),
                other => Ok(other.clone()),
            }
        };
        let actor = text("actor", &self.actor)?;
        let target = text("target", &self.target)?;
        let after = self
            .cursor
            .as_deref()
            .map(|c| Cursor::parse(c).ok_or_else(|| bad("cursor", "is not a cursor this listing returned".into())))
            .transpose()?;
        let limit = match self.limit.as_deref() {
            None => default_limit,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if (1..=max_limit).contains(&n) => n,
                _ => return Err(bad("limit", format!("{text:?} is not a whole number from 1 to {max_limit}"))),
            },
        };
        Ok(AuditFilter {
            tenant,
            since_us,
            until_us,
            kind_like,
            result,
            actor,
            target,
            after,
            after_position: None,
            order,
            limit,
        })
    }
}
