//! Limits as people write them (`10/1m,burst=5`) and the generic cell rate
//! algorithm (GCRA) that enforces them: a sustained `limit` per `window`, with up to
//! `burst` requests at once. One stored number per key (the theoretical arrival
//! time), so a check is one atomic read-modify-write, in memory or in Redis.

use std::fmt;
use std::time::Duration;

/// A limit: `limit` requests per `window`, `burst` of them back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u32,
    pub window: Duration,
    pub burst: u32,
}

impl Rule {
    /// Parses `LIMIT/WINDOW[,burst=N]`: `10/1m,burst=5`, `3/1h`, `600/60s,burst=100`.
    /// Without a burst, the whole limit may come at once.
    pub fn parse(text: &str) -> Option<Rule> {
        let (rate, burst) = match text.split_once(',') {
            Some((rate, burst)) => (rate, Some(burst.trim().strip_prefix("burst=")?.trim().parse::<u32>().ok()?)),
            None => (text, None),
        };
        let (limit, window) = rate.split_once('/')?;
        let limit: u32 = limit.trim().parse().ok().filter(|n| (1..=1_000_000).contains(n))?;
        let window = crate::config::parse::duration(window).filter(|w| {
            (Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600)).contains(w) && w.subsec_nanos() == 0
        })?;
        let burst = burst.unwrap_or(limit);
        (1..=1_000_000).contains(&burst).then_some(Rule { limit, window, burst })
    }

    /// Microseconds between two requests at the sustained rate.
    pub fn interval_us(&self) -> u64 {
        let window = u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX);
        (window / u64::from(self.limit)).max(1)
    }

    /// How far ahead of now the theoretical arrival time may run (microseconds).
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us().saturating_mul(u64::from(self.burst.saturating_sub(1)))
    }

    /// Applies the rule to a key whose theoretical arrival time is `tat` (None: never
    /// seen or expired) at `now` (both microseconds on one clock): the outcome and the
    /// new time to store when allowed.
    pub fn apply(&self, tat: Option<u64>, now: u64) -> (Outcome, Option<u64>) {
        let (interval, tolerance) = (self.interval_us(), self.tolerance_us());
        let tat = tat.unwrap_or(now).max(now);
        if now + tolerance < tat {
            let outcome = Outcome { allowed: false, retry_after_us: tat - tolerance - now, ahead_us: tat - now };
            return (outcome, None);
        }
        let new_tat = tat + interval;
        (Outcome { allowed: true, retry_after_us: 0, ahead_us: new_tat - now }, Some(new_tat))
    }

    /// The decision an outcome of this rule means.
    pub fn decision(&self, outcome: Outcome) -> Decision {
        let (interval, tolerance) = (self.interval_us(), self.tolerance_us());
        let room = (tolerance + interval).saturating_sub(outcome.ahead_us) / interval;
        Decision {
            allowed: outcome.allowed,
            limit: self.limit,
            window: self.window,
            burst: self.burst,
            remaining: u32::try_from(room).unwrap_or(u32::MAX).min(self.burst),
            reset_after: Duration::from_micros(outcome.ahead_us),
            retry_after: Duration::from_micros(outcome.retry_after_us),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s,burst={}", self.limit, self.window.as_secs(), self.burst)
    }
}

/// What a backend reports for one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// When refused: microseconds until a request would be allowed.
    pub retry_after_us: u64,
    /// Microseconds the key's theoretical arrival time is ahead of now (after the
    /// request, when allowed): how long until the key is as if never used.
    pub ahead_us: u64,
}

/// A check's answer, with what the RateLimit header fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub window: Duration,
    pub burst: u32,
    /// Requests that could still be made at once.
    pub remaining: u32,
    /// Until the key is fully replenished.
    pub reset_after: Duration,
    /// When refused: until the next request would be allowed.
    pub retry_after: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_as_written_and_refuse_nonsense() {
        let login = Rule::parse("10/1m,burst=5").unwrap();
        assert_eq!(login, Rule { limit: 10, window: Duration::from_secs(60), burst: 5 });
        assert_eq!(Rule::parse("3/1h").unwrap().burst, 3);
        assert_eq!(Rule::parse(&login.to_string()), Some(login));
        for bad in ["", "10", "0/1m", "10/0s", "10/1m,burst=0", "10/1m,bust=5", "x/1m", "10/500ms", "10/30d"] {
            assert_eq!(Rule::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_burst_passes_at_once_then_one_per_interval() {
        let rule = Rule::parse("10/1m,burst=5").unwrap();
        let (mut tat, mut now) = (None, 1_000_000_000u64);
        let mut remaining = vec![];
        for _ in 0..5 {
            let (outcome, next) = rule.apply(tat, now);
            assert!(outcome.allowed);
            remaining.push(rule.decision(outcome).remaining);
            tat = next;
        }
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        let (refused, next) = rule.apply(tat, now);
        assert!(!refused.allowed && next.is_none());
        let decision = rule.decision(refused);
        assert_eq!((decision.remaining, decision.retry_after), (0, Duration::from_secs(6)));
        assert_eq!(decision.reset_after, Duration::from_secs(30));
        now += 6_000_000;
        assert!(rule.apply(tat, now).0.allowed, "one more after the interval");
        // Unused for the whole burst time: as good as new.
        let (fresh, _) = rule.apply(tat, now + 60_000_000);
        assert_eq!(rule.decision(fresh).remaining, 4);
    }
}
