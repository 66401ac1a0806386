//! Group commit for events that record no change of their own: concurrent emitters'
//! records are written together, one transaction for whatever queued up while the
//! previous one was being written, and each emitter waits for its own to commit.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use super::model::AuditRecord;
use super::store::AuditStore;
use crate::store::StoreError;

/// Most records one transaction takes.
const MAX_BATCH: usize = 500;

type Pending = (AuditRecord, oneshot::Sender<Result<(), StoreError>>);

/// The queue to the writer task, started on first use.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: OnceLock<mpsc::UnboundedSender<Pending>>,
}

impl GroupCommit {
    /// Stores `record` with whatever else is waiting; returns once it has committed.
    pub(crate) async fn append(&self, store: &Arc<dyn AuditStore>, record: AuditRecord) -> Result<(), StoreError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(write(store.clone(), receiver));
            sender
        });
        let (done, committed) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the audit writer has stopped".into());
        queue.send((record, done)).map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }
}

async fn write(store: Arc<dyn AuditStore>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => waiting.push(next),
                Err(_) => break,
            }
        }
        let (records, done): (Vec<AuditRecord>, Vec<_>) = waiting.into_iter().unzip();
        let result = store.append(&records).await;
        for emitter in done {
            let _ = emitter.send(result.clone());
        }
    }
}
