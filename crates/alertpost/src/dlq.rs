//! `alertpost dlq`: the dead queue, read and replayed through the broker
//! (no data directory needed; works while workers run).
//!
//! Reading takes messages with `basic.get` on one channel and does not ack
//! them: closing the channel puts them back. Replay publishes each chosen
//! letter's job to `<prefix>.deliveries` (or, for an event the broker itself
//! dead-lettered, back to the events exchange), confirmed, and only then
//! acks (removes) the dead letter.

use alertpost_broker::{Broker, Destination, GetChannel, Inbound, Outgoing};
use alertpost_event::job::{DEAD_SCHEMA, DeadLetter, DeliveryJob, JOB_SCHEMA, JOBS_SCHEMA};
use alertpost_event::{EVENT_SCHEMA, Event};
use anyhow::anyhow;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Failure;
use crate::cli::DlqCommand;

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

    /// The summaries `dlq list` prints: one per delivery (a lane's batch
    /// holds several).
    fn rows(&self) -> Vec<Value> {
        let (detail, dead_at) = match &self.entry {
            Entry::Letter(l) => (l.detail.clone(), Some(l.dead_at)),
            Entry::Event(_) | Entry::Jobs(_) => (
                "moved here by RabbitMQ after too many deliveries".to_owned(),
                None,
            ),
            Entry::Unreadable(e) => (e.clone(), None),
        };
        let dead_at = dead_at.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        let row = |id: String, job: Option<&DeliveryJob>, event_id: Option<&str>| {
            json!({
                "id": id,
                "delivery_id": job.map(|j| j.delivery_id.clone()),
                "event_id": event_id,
                "integration": job.map(|j| j.integration.clone()),
                "reason": self.reason(),
                "attempts": job.map_or(0, |j| j.attempts),
                "dead_at": dead_at,
                "detail": detail,
            })
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
    fn full(&self) -> Value {
        match &self.entry {
            Entry::Letter(l) => serde_json::to_value(l).unwrap_or(Value::Null),
            Entry::Event(e) => json!({"reason": "delivery_limit", "event": e}),
            Entry::Jobs(jobs) => match jobs.as_slice() {
                [one] => json!({"reason": "delivery_limit", "job": one}),
                many => json!({"reason": "delivery_limit", "jobs": many}),
            },
            Entry::Unreadable(e) => {
                json!({"reason": "unreadable", "error": e, "raw": String::from_utf8_lossy(&self.msg.body)})
            }
        }
    }
}

fn read(msg: Inbound) -> Dead {
    let entry = match msg.kind.as_deref() {
        Some(DEAD_SCHEMA) | None => match serde_json::from_slice::<DeadLetter>(&msg.body) {
            Ok(l) => Entry::Letter(Box::new(l)),
            Err(e) => Entry::Unreadable(e.to_string()),
        },
        Some(EVENT_SCHEMA) => match Event::from_json(&msg.body) {
            Ok(e) => Entry::Event(Box::new(e)),
            Err(e) => Entry::Unreadable(e.to_string()),
        },
        Some(JOB_SCHEMA) => match serde_json::from_slice::<DeliveryJob>(&msg.body) {
            Ok(j) => Entry::Jobs(vec![j]),
            Err(e) => Entry::Unreadable(e.to_string()),
        },
        Some(JOBS_SCHEMA) => match serde_json::from_slice::<Vec<DeliveryJob>>(&msg.body) {
            Ok(jobs) => Entry::Jobs(jobs),
            Err(e) => Entry::Unreadable(e.to_string()),
        },
        Some(other) => Entry::Unreadable(format!("unknown message type `{other}`")),
    };
    Dead { msg, entry }
}

/// Takes up to `limit` messages from the dead queue, unacked.
async fn take(broker: &Broker, channel: &GetChannel, limit: usize) -> Result<Vec<Dead>, Failure> {
    let queue = broker.topology().dead_queue();
    let mut out = Vec::new();
    while out.len() < limit {
        match broker
            .get(channel, &queue)
            .await
            .map_err(|e| Failure::Runtime(e.into()))?
        {
            Some(msg) => out.push(read(msg)),
            None => break,
        }
    }
    Ok(out)
}

pub async fn run(broker: &Broker, command: &DlqCommand) -> Result<(), Failure> {
    let channel = broker
        .get_channel()
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    let result = match command {
        DlqCommand::List {
            integration,
            json,
            limit,
        } => list(broker, &channel, integration.as_deref(), *json, *limit).await,
        DlqCommand::Show { id } => show(broker, &channel, id).await,
        DlqCommand::Replay {
            integration,
            id,
            all,
        } => {
            if integration.is_none() && id.is_none() && !*all {
                Err(Failure::Usage(anyhow!(
                    "choose what to replay: --integration ID, --id ID or --all"
                )))
            } else {
                replay(broker, &channel, integration.as_deref(), id.as_deref()).await
            }
        }
        DlqCommand::Purge { yes } => {
            if *yes {
                let n = broker
                    .purge(&broker.topology().dead_queue())
                    .await
                    .map_err(|e| Failure::Runtime(e.into()))?;
                println!("purged {n} dead letters");
                Ok(())
            } else {
                Err(Failure::Usage(anyhow!(
                    "purging deletes every dead letter for good; add --yes"
                )))
            }
        }
    };
    // Whatever was taken and not acked goes back to the queue.
    channel.close().await;
    result
}

async fn list(
    broker: &Broker,
    channel: &GetChannel,
    integration: Option<&str>,
    as_json: bool,
    limit: usize,
) -> Result<(), Failure> {
    let all = take(broker, channel, limit).await?;
    let rows: Vec<Value> = all
        .iter()
        .filter(|d| integration.is_none_or(|i| d.integration() == Some(i)))
        .flat_map(Dead::rows)
        .collect();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    println!(
        "{:<38} {:<20} {:<12} {:>8}  DETAIL",
        "ID", "INTEGRATION", "REASON", "ATTEMPTS"
    );
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        let detail: String = s("detail").chars().take(80).collect();
        println!(
            "{:<38} {:<20} {:<12} {:>8}  {detail}",
            s("id"),
            s("integration"),
            s("reason"),
            r["attempts"]
        );
    }
    println!("{} dead letters", rows.len());
    Ok(())
}

async fn show(broker: &Broker, channel: &GetChannel, id: &str) -> Result<(), Failure> {
    let all = take(broker, channel, usize::MAX).await?;
    let found = all.iter().find(|d| d.matches(id)).ok_or_else(|| {
        Failure::Usage(anyhow!(
            "no dead letter `{id}` (by id, delivery id or event id)"
        ))
    })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&found.full()).unwrap_or_default()
    );
    Ok(())
}

async fn replay(
    broker: &Broker,
    channel: &GetChannel,
    integration: Option<&str>,
    id: Option<&str>,
) -> Result<(), Failure> {
    let all = take(broker, channel, usize::MAX).await?;
    let publisher = broker
        .publisher()
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    let now = OffsetDateTime::now_utc();
    let (mut replayed, mut unreplayable) = (0usize, 0usize);
    for dead in &all {
        let chosen = match (integration, id) {
            (Some(i), _) => dead.integration() == Some(i),
            (_, Some(id)) => dead.matches(id),
            (None, None) => true,
        };
        if !chosen {
            continue;
        }
        // What goes back: the event the broker moved here, or each job
        // (attempts reset, one hop on) to the deliveries.
        let sends: Vec<(Destination, Vec<u8>, &'static str, String)> = match &dead.entry {
            Entry::Event(e) => vec![(
                Destination::Events {
                    routing_key: e.routing_key(),
                },
                e.to_json(),
                EVENT_SCHEMA,
                e.id.clone(),
            )],
            _ => dead
                .jobs()
                .into_iter()
                .map(|job| {
                    let job = job.clone().replayed(now);
                    let id = job.delivery_id.clone();
                    (Destination::Deliveries, job.to_json(), JOB_SCHEMA, id)
                })
                .collect(),
        };
        if sends.is_empty() {
            unreplayable += 1;
            continue;
        }
        for (to, body, kind, message_id) in &sends {
            let msg = Outgoing {
                body,
                kind,
                message_id,
            };
            publisher
                .publish(to, &msg)
                .await
                .map_err(|e| Failure::Runtime(anyhow!("replaying {message_id}: {e}")))?;
        }
        // Confirmed: the dead letter can go.
        dead.msg
            .ack()
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
        replayed += sends.len();
    }
    publisher.close().await;
    println!("replayed {replayed} dead letters");
    if unreplayable > 0 {
        println!(
            "{unreplayable} chosen dead letters are messages that could not be read (no delivery to replay); see them with `alertpost dlq show ID`"
        );
    }
    Ok(())
}
