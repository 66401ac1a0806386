//! Queueing mail and delivering the outbox over SMTP.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::store::{EmailStore, OutboxMessage};
use super::templates::{Template, Templates};
use crate::store::StoreError;
use crate::tenants::TenantId;

/// Attempts before a message is given up on (about 5 hours of retries).
const MAX_ATTEMPTS: u32 = 12;
/// Messages one pass of the sender claims.
const BATCH: u32 = 20;
/// How long a claimed message is reserved for the sender that claimed it: longer than
/// a batch can take at the SMTP timeout, so no other replica sends it twice.
const LEASE: Duration = Duration::from_secs(600);
/// How often the outbox is looked at when nothing wakes the sender.
const POLL: Duration = Duration::from_secs(2);

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Delay before attempt `attempts + 1`: 30 s doubling, at most an hour.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(30u64.saturating_mul(1 << attempts.saturating_sub(1).min(10)).min(3600))
}

/// Renders and queues mail; a sender in this process is woken at once.
#[derive(Clone)]
pub struct OutboxSender {
    store: Arc<dyn EmailStore>,
    templates: Arc<Templates>,
    wake: Arc<Notify>,
    audit: crate::audit::AuditLog,
}

impl OutboxSender {
    /// An outbox writing to `store`; messages given up on are recorded in `audit`.
    pub fn new(store: Arc<dyn EmailStore>, templates: Templates, audit: crate::audit::AuditLog) -> OutboxSender {
        OutboxSender { store, templates: Arc::new(templates), wake: Arc::default(), audit }
    }

    /// Queues `template` for `recipient` with `values` filled in.
    pub async fn queue(
        &self,
        tenant: Option<TenantId>,
        template: Template,
        recipient: &str,
        values: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let rendered = self.templates.render(template, values);
        let message = OutboxMessage {
            id: Uuid::now_v7(),
            tenant,
            template: template.name().to_owned(),
            recipient: recipient.to_owned(),
            subject: rendered.subject,
            text_body: rendered.text,
            html_body: rendered.html,
            attempts: 0,
        };
        self.store.enqueue(&message, now_ms()).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Messages waiting to be sent.
    pub async fn pending(&self) -> Result<u64, StoreError> {
        self.store.pending().await
    }

    /// Delivers the outbox through `mailer` until `stop` turns true.
    pub async fn run(self, mailer: SmtpMailer, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let delivered = self.deliver_due(&mailer).await;
            if *stop.borrow() {
                return;
            }
            if delivered < BATCH as usize {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    /// One pass: claims due messages and tries each; returns how many were claimed.
    pub async fn deliver_due(&self, mailer: &SmtpMailer) -> usize {
        let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let batch = match self.store.claim_due(now_ms(), lease, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the email outbox");
                return 0;
            }
        };
        for message in &batch {
            let result = mailer.send(message).await;
            let outcome = match &result {
                Ok(()) => self.store.mark_sent(message.id, crate::stored_now()).await,
                Err(e) => {
                    let next = (!e.permanent && message.attempts < MAX_ATTEMPTS).then(|| {
                        now_ms().saturating_add(i64::try_from(backoff(message.attempts).as_millis()).unwrap_or(0))
                    });
                    tracing::warn!(
                        id = %message.id, template = %message.template, attempts = message.attempts,
                        retry = next.is_some(), error = %e.reason, "email not delivered"
                    );
                    self.store.mark_failed(message.id, &e.reason, next).await
                }
            };
            let label = match (&result, message.attempts >= MAX_ATTEMPTS) {
                (Ok(()), _) => "sent",
                (Err(e), last) if e.permanent || last => "failed",
                (Err(_), _) => "retry",
            };
            metrics::counter!("guard_email_sends_total", "template" => message.template.clone(), "result" => label)
                .increment(1);
            if label == "failed" {
                use crate::events::EventSink as _;
                let mut event = crate::events::Event::success("email.delivery.failed", crate::events::Actor::System)
                    .outcome(crate::events::Outcome::Error)
                    .target(message.id.to_string())
                    .details(serde_json::json!({ "template": message.template, "attempts": message.attempts }));
                if let Some(tenant) = message.tenant {
                    event = event.tenant(tenant.0);
                }
                self.audit.emit(event).await;
            }
            if let Err(e) = outcome {
                tracing::warn!(id = %message.id, error = %e, "cannot record the email's delivery state");
            }
        }
        batch.len()
    }
}

/// Why one delivery failed.
#[derive(Debug)]
pub struct SendError {
    pub reason: String,
    /// Retrying cannot help (a malformed address, a permanent SMTP rejection).
    pub permanent: bool,
}

/// An SMTP connection pool for one server (lettre).
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer for `url` (smtp://, smtps://; `?tls=required` for STARTTLS) sending as `from`.
    pub fn new(url: &str, from: &str) -> Result<SmtpMailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("SMTP_URL: {e}"))?
            .timeout(Some(Duration::from_secs(15)))
            .build();
        let from = from.parse().map_err(|e| format!("SMTP_FROM: {e}"))?;
        Ok(SmtpMailer { transport, from })
    }

    async fn send(&self, message: &OutboxMessage) -> Result<(), SendError> {
        let permanent = |reason: String| SendError { reason, permanent: true };
        let to: Mailbox = message.recipient.parse().map_err(|e| permanent(format!("recipient: {e}")))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .message_id(Some(format!("<{}@guard>", message.id)))
            .multipart(MultiPart::alternative_plain_html(message.text_body.clone(), message.html_body.clone()))
            .map_err(|e| permanent(e.to_string()))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError { permanent: e.is_permanent(), reason: e.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(5), Duration::from_secs(480));
        assert_eq!(backoff(12), Duration::from_secs(3600));
    }
}
