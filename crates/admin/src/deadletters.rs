//! The dead queue for operators: list, show, replay, purge. One code path
//! over any backend's [`Reader`] (RabbitMQ: `basic.get` on a channel of its
//! own; embedded: the queue itself), used by `alertpost dlq` through the
//! broker and by the admin API (`/v1/dlq`), so the command works against a
//! worker and against `alertpost run` alike.
//!
//! Reading takes messages without removing them; [`with_dead_queue`] closes
//! the reader afterwards and whatever was not acked goes back. A replay
//! publishes each chosen letter's job to the deliveries (or, for an event
//! the broker itself dead-lettered, back to the events), confirmed, and
//! only then acks (removes) the dead letter.

use std::future::Future;

use alertpost_event::job::{DEAD_SCHEMA, DeadLetter, DeliveryJob, JOB_SCHEMA};
use alertpost_event::message::Message;
use alertpost_event::{EVENT_SCHEMA, Event};
use alertpost_seam::{
    Backend, BrokerError, Destination, Inbound, Outgoing, PublishError, Reader, Session, Source,
};
use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

/// What a replay or purge could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("replaying {id}: {error} ({done} replayed before it)")]
    Replay {
        id: String,
        error: PublishError,
        done: usize,
    },
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// Those of one integration.
    Integration(String),
    /// The one with this id, delivery id or event id.
    Id(String),
    All,
}

/// One row of `dlq list`: one dead delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DlqRow {
    /// The dead letter's id (its delivery id for a dead delivery).
    pub id: String,
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    pub integration: Option<String>,
    /// Why: a dead-letter reason, `delivery_limit` (moved by the broker)
    /// or `unreadable`.
    pub reason: String,
    pub attempts: u32,
    /// When it died (RFC 3339), when known.
    pub dead_at: Option<String>,
    pub detail: String,
}

/// One dead message in full, as `dlq show` gives it: a dead letter, or
/// what the broker moved here after too many deliveries (an event, one
/// job or a lane's batch), or bytes that cannot be read.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DeadInFull {
    Letter(Box<DeadLetter>),
    Event {
        reason: String,
        #[schema(schema_with = alertpost_event::schema::event_schema_ref)]
        event: Box<Event>,
    },
    Job {
        reason: String,
        job: Box<DeliveryJob>,
    },
    Jobs {
        reason: String,
        jobs: Vec<DeliveryJob>,
    },
    Unreadable {
        reason: String,
        error: String,
        raw: String,
    },
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Deliveries (or events) sent back.
    pub replayed: usize,
    /// Chosen messages that could not be read: nothing to replay.
    pub unreadable: usize,
}

/// Where a replay publishes: a session's publishing side.
pub trait Resend: Sync {
    fn resend(
        &self,
        to: &Destination,
        msg: &Outgoing<'_>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// A [`Session`] as the target of a replay.
pub struct Through<'a, S>(pub &'a S);

impl<S: Session> Resend for Through<'_, S> {
    async fn resend(&self, to: &Destination, msg: &Outgoing<'_>) -> Result<(), PublishError> {
        self.0.publish(to, msg).await
    }
}

/// One message of the dead queue, read.
struct Dead {
    msg: Inbound,
    entry: Entry,
}

enum Entry {
    /// Written by a worker: the job (or bytes) and the reason.
    Letter(Box<DeadLetter>),
    /// An event the broker moved here (delivery limit reached).
    Event(Box<Event>),
    /// Jobs the broker moved here (delivery limit reached): one, or a
    /// lane's batch (all of one integration).
    Jobs(Vec<DeliveryJob>),
    /// Something else.
    Unreadable(String),
}

impl Dead {
    fn read(msg: Inbound) -> Dead {
        // A message without a type here is a dead letter (what workers
        // publish); the broker moves events and jobs here with theirs.
        let entry = match Message::read(msg.kind.as_deref(), &msg.body, DEAD_SCHEMA) {
            Ok(Message::Dead(l)) => Entry::Letter(l),
            Ok(Message::Event(e)) => Entry::Event(e),
            Ok(Message::Job(j)) => Entry::Jobs(vec![*j]),
            Ok(Message::Jobs(jobs)) => Entry::Jobs(jobs),
            Err(e) => Entry::Unreadable(e),
        };
        Dead { msg, entry }
    }

    fn id(&self) -> String {
        match &self.entry {
            Entry::Letter(l) => l.id.clone(),
            Entry::Event(e) => e.id.clone(),
            Entry::Jobs(jobs) => jobs
                .first()
                .map(|j| j.delivery_id.clone())
                .unwrap_or_default(),
            Entry::Unreadable(_) => self.msg.message_id.clone().unwrap_or_default(),
        }
    }

    fn job(&self) -> Option<&DeliveryJob> {
        self.jobs().first().copied()
    }

    /// Every delivery job it holds.
    fn jobs(&self) -> Vec<&DeliveryJob> {
        match &self.entry {
            Entry::Letter(l) => l.job.iter().collect(),
            Entry::Jobs(jobs) => jobs.iter().collect(),
            _ => Vec::new(),
        }
    }

    fn event_id(&self) -> Option<&str> {
        match &self.entry {
            Entry::Event(e) => Some(&e.id),
            _ => self.job().map(|j| j.event.id.as_str()),
        }
    }

    fn integration(&self) -> Option<&str> {
        self.job().map(|j| j.integration.as_str())
    }

    fn reason(&self) -> String {
        match &self.entry {
            Entry::Letter(l) => l.reason.to_string(),
            Entry::Event(_) | Entry::Jobs(_) => "delivery_limit".to_owned(),
            Entry::Unreadable(_) => "unreadable".to_owned(),
        }
    }

    fn matches(&self, id: &str) -> bool {
        self.id() == id
            || self.event_id() == Some(id)
            || self
                .jobs()
                .iter()
                .any(|j| j.delivery_id == id || j.event.id == id)
    }

    fn chosen(&self, which: &Which) -> bool {
        match which {
            Which::Integration(i) => self.integration() == Some(i),
            Which::Id(id) => self.matches(id),
            Which::All => true,
        }
    }

    /// The summaries `dlq list` prints: one per delivery (a lane's batch
    /// holds several).
    fn rows(&self) -> Vec<DlqRow> {
        let (detail, dead_at) = match &self.entry {
            Entry::Letter(l) => (l.detail.clone(), Some(l.dead_at)),
            Entry::Event(_) | Entry::Jobs(_) => (
                "moved here by the broker after too many deliveries".to_owned(),
                None,
            ),
            Entry::Unreadable(e) => (e.clone(), None),
        };
        let dead_at = dead_at.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        let row = |id: String, job: Option<&DeliveryJob>, event_id: Option<&str>| DlqRow {
            id,
            delivery_id: job.map(|j| j.delivery_id.clone()),
            event_id: event_id.map(str::to_owned),
            integration: job.map(|j| j.integration.clone()),
            reason: self.reason(),
            attempts: job.map_or(0, |j| j.attempts),
            dead_at: dead_at.clone(),
            detail: detail.clone(),
        };
        match &self.entry {
            Entry::Jobs(jobs) => jobs
                .iter()
                .map(|j| row(j.delivery_id.clone(), Some(j), Some(&j.event.id)))
                .collect(),
            _ => vec![row(self.id(), self.job(), self.event_id())],
        }
    }

    /// The full record `dlq show` prints.
    fn full(&self) -> DeadInFull {
        let moved = || "delivery_limit".to_owned();
        match &self.entry {
            Entry::Letter(l) => DeadInFull::Letter(l.clone()),
            Entry::Event(e) => DeadInFull::Event {
                reason: moved(),
                event: e.clone(),
            },
            Entry::Jobs(jobs) => match jobs.as_slice() {
                [one] => DeadInFull::Job {
                    reason: moved(),
                    job: Box::new(one.clone()),
                },
                many => DeadInFull::Jobs {
                    reason: moved(),
                    jobs: many.to_vec(),
                },
            },
            Entry::Unreadable(e) => DeadInFull::Unreadable {
                reason: "unreadable".to_owned(),
                error: e.clone(),
                raw: String::from_utf8_lossy(&self.msg.body).into_owned(),
            },
        }
    }

    /// What goes back: the event the broker moved here, or each job
    /// (attempts reset, one hop on) to the deliveries.
    fn sends(
        &self,
        now: OffsetDateTime,
        force: bool,
    ) -> Vec<(Destination, Vec<u8>, &'static str, String)> {
        match &self.entry {
            Entry::Event(e) => vec![(
                alertpost_seam::topology::event_destination(e),
                e.to_json(),
                EVENT_SCHEMA,
                e.id.clone(),
            )],
            _ => self
                .jobs()
                .into_iter()
                .map(|job| {
                    let job = job.clone().replayed(now, force);
                    let id = job.delivery_id.clone();
                    (Destination::Deliveries, job.to_json(), JOB_SCHEMA, id)
                })
                .collect(),
        }
    }
}

/// Runs `work` on the dead queue of a session of its own, then gives back
/// what it took and did not ack, and closes the session.
pub async fn with_dead_queue<B: Backend, T>(
    backend: &B,
    work: impl AsyncFnOnce(&B::Session, &mut <B::Session as Session>::Reader) -> T,
) -> Result<T, BrokerError> {
    let session = backend.open().await?;
    let mut reader = match session.reader(&Source::Dead).await {
        Ok(r) => r,
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    let out = work(&session, &mut reader).await;
    reader.close().await;
    session.close().await;
    Ok(out)
}

/// Deletes every dead letter no reader holds, on a session of its own
/// (RabbitMQ: one `queue.purge`); returns how many.
pub async fn purge<B: Backend>(backend: &B) -> Result<usize, BrokerError> {
    let session = backend.open().await?;
    let purged = session.purge(&Source::Dead).await;
    session.close().await;
    purged
}

/// Up to `limit` messages, taken (not removed).
async fn take<R: Reader>(reader: &mut R, limit: usize) -> Result<Vec<Dead>, BrokerError> {
    let mut out = Vec::new();
    while out.len() < limit {
        match reader.next().await? {
            Some(msg) => out.push(Dead::read(msg)),
            None => break,
        }
    }
    Ok(out)
}

/// The summaries of the first `limit` dead messages (of one integration,
/// when given: the others before them do not count).
pub async fn list<R: Reader>(
    reader: &mut R,
    integration: Option<&str>,
    limit: usize,
) -> Result<Vec<DlqRow>, BrokerError> {
    let mut rows = Vec::new();
    while rows.len() < limit {
        let Some(msg) = reader.next().await? else {
            break;
        };
        let dead = Dead::read(msg);
        if integration.is_none_or(|i| dead.integration() == Some(i)) {
            rows.extend(dead.rows());
        }
    }
    rows.truncate(limit);
    Ok(rows)
}

/// One dead letter in full, by its id, delivery id or event id.
pub async fn show<R: Reader>(reader: &mut R, id: &str) -> Result<Option<DeadInFull>, BrokerError> {
    loop {
        match reader.next().await? {
            Some(msg) => {
                let dead = Dead::read(msg);
                if dead.matches(id) {
                    return Ok(Some(dead.full()));
                }
            }
            None => return Ok(None),
        }
    }
}

/// Sends the chosen dead letters back to be delivered, attempts reset;
/// each is removed only once all it holds is confirmed. What is in the dead
/// queue is taken first, then replayed: a replay that dies again while this
/// runs lands behind what was taken and is not replayed again (else a
/// receiver still refusing would be sent the same letters without end).
/// `force`: each delivery is sent even if its alert had a newer event since
/// (else per-key order supersedes it); a dead *event* is taken in again as
/// any event is, and ordered by its position.
pub async fn replay<R: Reader, P: Resend>(
    reader: &mut R,
    to: &P,
    which: &Which,
    force: bool,
) -> Result<Replayed, DlqError> {
    let now = OffsetDateTime::now_utc();
    let taken = take(reader, usize::MAX).await?;
    let mut done = Replayed::default();
    for dead in taken.iter().filter(|d| d.chosen(which)) {
        let sends = dead.sends(now, force);
        if sends.is_empty() {
            done.unreadable += 1;
            continue;
        }
        // A lane's batch goes back job by job: if one fails, those before
        // it went out and the letter stays, so a later replay sends them
        // again (at least once, as everywhere).
        for (dest, body, kind, message_id) in &sends {
            let msg = Outgoing {
                body,
                kind,
                message_id,
            };
            if let Err(error) = to.resend(dest, &msg).await {
                return Err(DlqError::Replay {
                    id: message_id.clone(),
                    error,
                    done: done.replayed,
                });
            }
        }
        // Confirmed: the dead letter can go.
        dead.msg.ack().await?;
        done.replayed += sends.len();
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use alertpost_event::job::DeadReason;
    use alertpost_event::{Event, Status};
    use alertpost_seam::Held;
    use alertpost_seam::{BoxFuture, Received, Settler};

    use super::*;

    /// A dead queue in memory: what a replay publishes dies again at once
    /// (a receiver that still refuses), landing at the end of the queue.
    #[derive(Clone, Default)]
    struct Queue(Arc<Mutex<VecDeque<Vec<u8>>>>);

    struct Acked;

    impl Settler for Acked {
        fn ack(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
            Box::pin(async { Ok(()) })
        }
        fn requeue(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
            Box::pin(async { Ok(()) })
        }
        fn held(&self) -> Held {
            Held::new(|| true)
        }
    }

    impl Reader for Queue {
        async fn next(&mut self) -> Result<Option<Inbound>, BrokerError> {
            let body = self.0.lock().unwrap().pop_front();
            Ok(body.map(|body| {
                Inbound::new(
                    Received {
                        body: body.into(),
                        kind: Some(DEAD_SCHEMA.to_owned()),
                        message_id: None,
                        redelivered: false,
                        source: Source::Dead,
                        queue: "dead".to_owned(),
                    },
                    Acked,
                )
            }))
        }
        async fn close(self) {}
    }

    struct DiesAgain(Queue, Mutex<usize>);

    impl Resend for DiesAgain {
        async fn resend(&self, _: &Destination, msg: &Outgoing<'_>) -> Result<(), PublishError> {
            *self.1.lock().unwrap() += 1;
            let job: DeliveryJob = serde_json::from_slice(msg.body).unwrap();
            let now = OffsetDateTime::now_utc();
            let letter =
                DeadLetter::of_job(job, DeadReason::Status, "HTTP 410".into(), "q".into(), now);
            self.0.0.lock().unwrap().push_back(letter.to_json());
            Ok(())
        }
    }

    fn letter(integration: &str, n: usize) -> Vec<u8> {
        let event = Event::new("t", Status::Firing, format!("e{n}"));
        let job = DeliveryJob {
            delivery_id: format!("dlv_{integration}_{n}"),
            integration: integration.to_owned(),
            attempts: 1,
            hop: 1,
            first_attempt_at: OffsetDateTime::now_utc(),
            not_before: OffsetDateTime::now_utc(),
            replayed: None,
            history: Vec::new(),
            event,
        };
        let now = OffsetDateTime::now_utc();
        DeadLetter::of_job(job, DeadReason::Status, "HTTP 410".into(), "q".into(), now).to_json()
    }

    #[tokio::test]
    async fn a_replay_that_dies_again_is_not_replayed_again() {
        let queue = Queue::default();
        for n in 0..3 {
            queue.0.lock().unwrap().push_back(letter("hook", n));
        }
        let to = DiesAgain(queue.clone(), Mutex::new(0));
        let mut reader = queue.clone();
        let done = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            replay(&mut reader, &to, &Which::All, false),
        )
        .await
        .expect("a replay ends")
        .unwrap();
        assert_eq!(done.replayed, 3);
        assert_eq!(*to.1.lock().unwrap(), 3, "each sent once");
    }

    #[tokio::test]
    async fn a_list_of_one_integration_skips_the_others_before_it() {
        let queue = Queue::default();
        for n in 0..5 {
            queue.0.lock().unwrap().push_back(letter("other", n));
        }
        queue.0.lock().unwrap().push_back(letter("hook", 9));
        let rows = list(&mut queue.clone(), Some("hook"), 2).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].delivery_id.as_deref(), Some("dlv_hook_9"));
    }
}
