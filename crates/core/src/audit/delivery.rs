//! Continuous delivery of sealed audit records to a SIEM: RFC 5424 syslog over TCP
//! (RFC 6587 octet counting) or an HTTPS webhook. At least once: each chain's position
//! is stored only after its records were sent, so a restart (or another replica taking
//! over the lease) resumes where delivery stopped and may repeat the last batch.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::model::AuditRecord;
use super::service::{AuditLog, now_us};
use crate::Secret;

/// Records sent a batch.
const BATCH: u32 = 500;
/// How long one replica holds the delivery lease without renewing it.
const LEASE: Duration = Duration::from_secs(30);
/// The lease's name.
const LEASE_NAME: &str = "audit-delivery";
/// The chain id under which a sink's first pass is recorded: a sink with this
/// position has been set up, whatever its chains' positions.
const SINK_STARTED: Uuid = Uuid::max();

/// Where delivery to a sink guard has not delivered to before starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryStart {
    /// With the records sealed from the sink's first pass on: a new SIEM does not
    /// receive the whole kept log at once.
    #[default]
    Now,
    /// With every record kept.
    Beginning,
}

impl DeliveryStart {
    /// `now` or `beginning`.
    pub fn parse(text: &str) -> Option<DeliveryStart> {
        match text.trim() {
            "now" => Some(DeliveryStart::Now),
            "beginning" => Some(DeliveryStart::Beginning),
            _ => None,
        }
    }
}

/// Where records go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// `syslog+tcp://HOST:PORT`
    Syslog { address: String },
    /// `https://…` (or `http://` to a loopback address), records POSTed as JSON.
    Webhook { url: String, token: Option<Secret> },
}

impl Sink {
    /// The sink `url` names, with the bearer `token` for a webhook.
    pub fn parse(url: &str, token: Option<Secret>) -> Result<Sink, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        let host = parsed.host_str().ok_or("no host")?.to_owned();
        match parsed.scheme() {
            "syslog+tcp" => {
                let port = parsed.port().ok_or("a syslog URL needs a port, such as syslog+tcp://siem:514")?;
                Ok(Sink::Syslog { address: format!("{host}:{port}") })
            }
            "https" => Ok(Sink::Webhook { url: url.to_owned(), token }),
            "http" if is_loopback(&host) => Ok(Sink::Webhook { url: url.to_owned(), token }),
            "http" => Err("a webhook must use https (http only to a loopback address)".into()),
            other => Err(format!("{other}: use syslog+tcp://HOST:PORT or https://…")),
        }
    }

    /// The name delivery positions are kept under: the URL without credentials or query.
    pub fn name(&self) -> String {
        match self {
            Sink::Syslog { address } => format!("syslog+tcp://{address}"),
            Sink::Webhook { url, .. } => match url::Url::parse(url) {
                Ok(mut u) => {
                    u.set_query(None);
                    let _ = u.set_password(None);
                    let _ = u.set_username("");
                    u.to_string()
                }
                Err(_) => url.clone(),
            },
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Delivers the audit log to one sink, taking turns with other replicas by lease.
pub struct Deliverer {
    log: AuditLog,
    sink: Sink,
    start: DeliveryStart,
    name: String,
    holder: String,
    hostname: String,
    http: reqwest::Client,
    syslog: Mutex<Option<tokio::net::TcpStream>>,
}

impl Deliverer {
    /// A deliverer of `log` to `sink`, starting at `start` when the sink is new.
    pub fn new(log: AuditLog, sink: Sink, start: DeliveryStart) -> Result<Deliverer, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or_else(|| "-".to_owned());
        let name = sink.name();
        Ok(Deliverer {
            log,
            sink,
            start,
            name,
            holder: Uuid::now_v7().to_string(),
            hostname,
            http,
            syslog: Mutex::new(None),
        })
    }

    /// Delivers until `stop` turns true: every second, or sooner after a full batch;
    /// after a failure, waits up to a minute, doubling.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match self.pass().await {
                Ok(sent) if sent >= u64::from(BATCH) => Duration::ZERO,
                Ok(_) => {
                    backoff = Duration::from_secs(1);
                    Duration::from_secs(1)
                }
                Err(e) => {
                    metrics::counter!("guard_audit_delivery_failures_total").increment(1);
                    tracing::warn!(sink = %self.name, error = %e, retry_in_s = backoff.as_secs(), "audit delivery failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    wait
                }
            };
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
        }
        if let Err(e) = self.log.store().release_lease(LEASE_NAME, &self.holder).await {
            tracing::debug!(error = %e, "cannot release the audit delivery lease");
        }
    }

    /// One pass over every chain (when this process holds the lease): sends what is
    /// sealed and not yet delivered, in order; returns how many records went.
    pub async fn pass(&self) -> Result<u64, String> {
        let store = self.log.store();
        let text = |e: crate::store::StoreError| e.to_string();
        let positions = store.delivered(&self.name).await.map_err(text)?;
        if !store.take_lease(LEASE_NAME, &self.holder, LEASE).await.map_err(text)? {
            // Another replica delivers; this one still reports how far behind it is.
            let mut oldest_waiting: Option<i64> = None;
            for chain in store.chains(None).await.map_err(text)? {
                let position = positions.iter().find(|(t, _)| *t == chain.tenant).map_or(0, |(_, s)| *s);
                if let Some(next) =
                    store.sealed_after(chain.tenant, position.max(chain.anchor_seq), 1).await.map_err(text)?.first()
                {
                    oldest_waiting = Some(oldest_waiting.map_or(next.at_us, |o| o.min(next.at_us)));
                }
            }
            self.record_lag(oldest_waiting);
            return Ok(0);
        }
        let positions = self.set_up(positions).await.map_err(text)?;
        let mut sent = 0;
        let mut oldest_waiting: Option<i64> = None;
        for chain in store.chains(None).await.map_err(text)? {
            let mut position = positions
                .iter()
                .find(|(tenant, _)| *tenant == chain.tenant)
                .map_or(0, |(_, seq)| *seq)
                .max(chain.anchor_seq);
            loop {
                let batch = store.sealed_after(chain.tenant, position, BATCH).await.map_err(text)?;
                let Some(last) = batch.last().and_then(|r| r.seq) else { break };
                if let Err(e) = self.send(&batch).await {
                    oldest_waiting = Some(batch[0].at_us);
                    self.record_lag(oldest_waiting);
                    return Err(e);
                }
                store.set_delivered(&self.name, chain.tenant, last).await.map_err(text)?;
                sent += batch.len() as u64;
                position = last;
                if batch.len() < BATCH as usize || sent >= 10 * u64::from(BATCH) {
                    break;
                }
            }
            if let Some(next) = store.sealed_after(chain.tenant, position, 1).await.map_err(text)?.first() {
                oldest_waiting = Some(oldest_waiting.map_or(next.at_us, |o| o.min(next.at_us)));
            }
        }
        metrics::counter!("guard_audit_delivered_total").increment(sent);
        self.record_lag(oldest_waiting);
        Ok(sent)
    }

    /// The positions of a sink seen for the first time, set to where delivery starts:
    /// each chain's sealed end (`now`) or nothing (`beginning`). A sink that already
    /// has positions (delivering before this mark existed) keeps them.
    async fn set_up(&self, positions: Vec<(Uuid, i64)>) -> Result<Vec<(Uuid, i64)>, crate::store::StoreError> {
        if positions.iter().any(|(tenant, _)| *tenant == SINK_STARTED) {
            return Ok(positions);
        }
        let store = self.log.store();
        if positions.is_empty() && self.start == DeliveryStart::Now {
            for chain in store.chains(None).await? {
                store.set_delivered(&self.name, chain.tenant, chain.last_seq).await?;
            }
            tracing::info!(sink = %self.name, "a new audit sink: delivery starts with the events sealed from now on");
        }
        store.set_delivered(&self.name, SINK_STARTED, 0).await?;
        store.delivered(&self.name).await
    }

    fn record_lag(&self, oldest_waiting: Option<i64>) {
        let lag = oldest_waiting.map_or(0.0, |at| (now_us() - at).max(0) as f64 / 1e6);
        metrics::gauge!("guard_audit_delivery_lag_seconds").set(lag);
    }

    async fn send(&self, batch: &[AuditRecord]) -> Result<(), String> {
        match &self.sink {
            Sink::Syslog { address } => {
                let mut frames = Vec::with_capacity(batch.len() * 512);
                for record in batch {
                    let message = syslog_message(record, &self.hostname);
                    frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    frames.extend_from_slice(message.as_bytes());
                }
                let mut connection = self.syslog.lock().await;
                if connection.is_none() {
                    let stream = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(address))
                        .await
                        .map_err(|_| format!("{address}: connection timed out"))?
                        .map_err(|e| format!("{address}: {e}"))?;
                    *connection = Some(stream);
                }
                let Some(stream) = connection.as_mut() else { return Err("no connection".into()) };
                let written = tokio::time::timeout(Duration::from_secs(10), async {
                    stream.write_all(&frames).await?;
                    stream.flush().await
                })
                .await;
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        *connection = None;
                        Err(format!("{address}: {e}"))
                    }
                    Err(_) => {
                        *connection = None;
                        Err(format!("{address}: write timed out"))
                    }
                }
            }
            Sink::Webhook { url, token } => {
                let events: Vec<_> = batch.iter().map(AuditRecord::to_json).collect();
                let mut request = self.http.post(url).json(&json!({ "events": events }));
                if let Some(token) = token {
                    request = request.bearer_auth(token.expose());
                }
                let response = request.send().await.map_err(|e| format!("webhook: {}", e.without_url()))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("webhook answered {}", response.status()))
                }
            }
        }
    }
}

/// One RFC 5424 message: facility 13 (log audit), severity by result, the event type
/// as MSGID, and the record as JSON after a BOM.
fn syslog_message(record: &AuditRecord, hostname: &str) -> String {
    let severity = match record.result.as_str() {
        "success" => 6,
        "failure" => 5,
        "denied" => 4,
        _ => 3,
    };
    let msgid: String = record.kind.chars().filter(char::is_ascii_graphic).take(32).collect();
    format!(
        "<{}>1 {} {hostname} guard - {} - \u{feff}{}",
        13 * 8 + severity,
        record.time_text(),
        if msgid.is_empty() { "-".to_owned() } else { msgid },
        record.to_json()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_are_syslog_over_tcp_or_https_webhooks() {
        assert!(matches!(Sink::parse("syslog+tcp://siem.example.com:6514", None), Ok(Sink::Syslog { .. })));
        assert!(Sink::parse("syslog+tcp://siem.example.com", None).is_err(), "a port is needed");
        assert!(matches!(Sink::parse("https://siem.example.com/hook?key=1", None), Ok(Sink::Webhook { .. })));
        assert!(Sink::parse("http://siem.example.com/hook", None).is_err(), "plain http only on loopback");
        assert!(Sink::parse("http://127.0.0.1:9000/hook", None).is_ok());
        assert!(Sink::parse("ftp://x", None).is_err());
        let named = Sink::parse("https://user:pw@siem.example.com/hook?key=secret", None).unwrap().name();
        assert_eq!(named, "https://siem.example.com/hook");
    }
}
