//! Refresh-token rotations are written in batches. One task takes every rotation that
//! is waiting, spends them all in one statement and answers each: under load the
//! database sees one write and one commit for many refreshes, where each would
//! otherwise wait its turn for the writer (SQLite has one) and commit alone.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use super::model::{RefreshOutcome, RefreshRotation};
use super::store::SessionStore;
use crate::store::StoreError;

/// Most rotations written by one statement.
const MAX_BATCH: usize = 64;
/// Rotations waiting beyond this make callers wait to enqueue theirs.
const QUEUE_DEPTH: usize = 4096;

type Reply = oneshot::Sender<Result<RefreshOutcome, StoreError>>;

/// Hands rotations to the batching task, started on first use (inside the runtime).
/// One task on every backend: on PostgreSQL, several measured slower than one (more
/// commits, each with its WAL flush, and smaller batches).
pub(crate) struct RotationQueue {
    store: Arc<dyn SessionStore>,
    sender: OnceLock<mpsc::Sender<(RefreshRotation, Reply)>>,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the refresh-token writer has stopped".into())
}

impl RotationQueue {
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> RotationQueue {
        RotationQueue { store, sender: OnceLock::new() }
    }

    /// Spends `rotation`'s presented token, in whichever batch is written next.
    pub(crate) async fn rotate(&self, rotation: RefreshRotation) -> Result<RefreshOutcome, StoreError> {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
            tokio::spawn(write_batches(self.store.clone(), receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        sender.send((rotation, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Writes what is waiting, one batch at a time, until every sender is gone.
async fn write_batches(store: Arc<dyn SessionStore>, mut receiver: mpsc::Receiver<(RefreshRotation, Reply)>) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let rotations: Vec<RefreshRotation> = waiting.iter().map(|(rotation, _)| *rotation).collect();
        match store.rotate_refresh(&rotations, super::service::now()).await {
            Ok(outcomes) if outcomes.len() == rotations.len() => {
                for ((_, reply), outcome) in waiting.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Ok(_) => {
                let e = StoreError::Internal("refresh rotation answered for the wrong number of tokens".into());
                waiting.drain(..).for_each(|(_, reply)| drop(reply.send(Err(e.clone()))));
            }
            Err(e) => waiting.drain(..).for_each(|(_, reply)| drop(reply.send(Err(e.clone())))),
        }
    }
}
