//! Lane hand-offs, gathered: the deliveries handed to one integration's
//! lane by many messages at once go out as one broker message (a
//! `alertpost.jobs.v1` array), each hand-off confirmed when it is.
//!
//! Why: an integration that cannot keep up (slow, dead, at its limit)
//! sends nearly every event through its lane. One broker message per
//! delivery doubles what the broker stores per event, and its cost fell on
//! every other integration (measured: a healthy neighbour lost 15 to 30 %
//! of its rate, with pauses of a second when the broker throttled the
//! connection). Gathered, the lane costs a fraction of that.
//!
//! Nothing waits to gather: the writer takes what is queued when it is
//! free, so under light load each hand-off goes alone at once, and under
//! load a batch forms while the previous ones are being confirmed. At most
//! [`IN_FLIGHT`] batches per lane await their confirm; a batch holds at
//! most [`MAX_JOBS`] jobs and about [`MAX_BYTES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alertpost_event::job::{DeliveryJob, JOB_SCHEMA, JOBS_SCHEMA};
use alertpost_seam::{Destination, Held, Outgoing, PublishError, Session};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::step::LaneJob;

/// Jobs in one lane message at most. A lane's consumer holds up to its
/// prefetch (the integration's concurrency) of messages, so a worker
/// holds at most 64 × concurrency of an integration's waiting deliveries:
/// for a receiver taking 3 s at the default 32, about 3 minutes of its
/// backlog, within the 5 minutes a delivery may wait its turn.
const MAX_JOBS: usize = 64;
/// Bytes of one lane message, about (the job that crosses it still goes).
const MAX_BYTES: usize = 64 * 1024;
/// Batches of one lane awaiting their confirm at once. One: what comes
/// during a confirm's round trip forms the next batch (measured: about 47
/// deliveries a message under load, where two in flight made half that).
const IN_FLIGHT: usize = 1;
/// Hand-offs waiting for a lane's writer; beyond this, hand-offs wait.
const QUEUE: usize = 4 * MAX_JOBS;

/// One hand-off to a lane: the job's JSON, and who waits for its confirm.
struct Queued {
    job: bytes::Bytes,
    delivery_id: String,
    /// Whether the message it is for is still ours.
    held: Held,
    done: oneshot::Sender<Result<(), PublishError>>,
}

impl Queued {
    /// Still wanted: its hand-off waits for it, and its message is ours.
    fn wanted(&self) -> bool {
        !self.done.is_closed() && self.held.get()
    }
}

/// The writers of one session, one per lane used.
pub(crate) struct LaneWriters<S> {
    session: Arc<S>,
    writers: Mutex<HashMap<String, mpsc::Sender<Queued>>>,
}

impl<S: Session> LaneWriters<S> {
    pub fn new(session: Arc<S>) -> LaneWriters<S> {
        LaneWriters {
            session,
            writers: Mutex::new(HashMap::new()),
        }
    }

    /// Hands `job` to its integration's lane; returns once the broker has
    /// confirmed the message that carries it.
    pub async fn hand_off(&self, job: &LaneJob, held: &Held) -> Result<(), PublishError> {
        let (done, confirmed) = oneshot::channel();
        let queued = Queued {
            job: job.json.clone(),
            delivery_id: job.delivery_id.clone(),
            held: held.clone(),
            done,
        };
        let writer = self.writer(&job.integration);
        if writer.send(queued).await.is_err() {
            return Err(PublishError::Unavailable(
                "the lane writer stopped".to_owned(),
            ));
        }
        confirmed.await.unwrap_or_else(|_| {
            Err(PublishError::Unavailable(
                "the lane writer stopped".to_owned(),
            ))
        })
    }

    fn writer(&self, lane: &str) -> mpsc::Sender<Queued> {
        // A poisoned map of senders is still a map of senders.
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = writers.get(lane).filter(|w| !w.is_closed()) {
            return w.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(self.session.clone(), lane.to_owned(), rx));
        writers.insert(lane.to_owned(), tx.clone());
        tx
    }
}

/// Gathers and publishes one lane's hand-offs until every sender is gone
/// (the session ended).
async fn write<S: Session>(session: Arc<S>, lane: String, mut queue: mpsc::Receiver<Queued>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Free first, then gather: what queues meanwhile joins the batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut bytes = 0;
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(q) = next.take() {
            // A job whose message is no longer ours (its channel went, its
            // task was stopped) is not published: that would fork it.
            if q.wanted() {
                bytes += q.job.len();
                batch.push(q);
            } else {
                let _ = q.done.send(Err(PublishError::Unavailable(
                    "its message is no longer this worker's".to_owned(),
                )));
            }
            if batch.len() >= MAX_JOBS || bytes >= MAX_BYTES {
                break;
            }
            next = queue.try_recv().ok();
        }
        if batch.is_empty() {
            continue;
        }
        tracing::trace!(%lane, jobs = batch.len(), bytes, "lane batch");
        let session = session.clone();
        let lane = lane.clone();
        tokio::spawn(async move {
            let result = publish(&*session, &lane, &batch).await;
            for q in batch {
                let _ = q.done.send(result.clone());
            }
            drop(permit);
        });
    }
}

async fn publish<S: Session>(
    session: &S,
    lane: &str,
    batch: &[Queued],
) -> Result<(), PublishError> {
    // One job goes as itself: a lane under light load holds plain jobs.
    let (body, kind) = match batch {
        [one] => (one.job.to_vec(), JOB_SCHEMA),
        many => (
            DeliveryJob::batch(many.iter().map(|q| q.job.as_ref())),
            JOBS_SCHEMA,
        ),
    };
    let msg = Outgoing {
        body: &body,
        kind,
        message_id: batch.first().map_or("", |q| q.delivery_id.as_str()),
    };
    let to = Destination::Lane(lane.to_owned());
    alertpost_seam::publish_bounded(session, &to, &msg).await
}
