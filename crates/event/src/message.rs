//! A message of alertpost's queues, read by its type: the `type` property a
//! publisher sets to the body's schema. One reading for the worker (its
//! work queues) and the dead-letter tools (the dead queue).

use crate::event::{EVENT_SCHEMA, Event};
use crate::job::{DEAD_SCHEMA, DeadLetter, DeliveryJob, JOB_SCHEMA, JOBS_SCHEMA};

/// What a message holds.
#[derive(Debug)]
pub enum Message {
    /// An event (`alertpost.event.v1`), as published, not yet prepared.
    Event(Box<Event>),
    /// One delivery job (`alertpost.job.v1`).
    Job(Box<DeliveryJob>),
    /// A lane's batch of delivery jobs (`alertpost.jobs.v1`).
    Jobs(Vec<DeliveryJob>),
    /// A dead letter (`alertpost.dead.v1`).
    Dead(Box<DeadLetter>),
}

impl Message {
    /// Reads `body` as the schema `kind` names, or as `assumed` when the
    /// message names none (older publishers set no type: the queue it was
    /// taken from says what it holds). The error says what is wrong with
    /// it.
    pub fn read(kind: Option<&str>, body: &[u8], assumed: &str) -> Result<Message, String> {
        match kind.unwrap_or(assumed) {
            EVENT_SCHEMA => Event::from_json(body)
                .map(|e| Message::Event(Box::new(e)))
                .map_err(|e| e.to_string()),
            JOB_SCHEMA => serde_json::from_slice(body)
                .map(|j| Message::Job(Box::new(j)))
                .map_err(|e| format!("not a valid {JOB_SCHEMA} delivery job: {e}")),
            JOBS_SCHEMA => serde_json::from_slice(body)
                .map(Message::Jobs)
                .map_err(|e| format!("not a valid {JOBS_SCHEMA} array of delivery jobs: {e}")),
            DEAD_SCHEMA => serde_json::from_slice(body)
                .map(|l| Message::Dead(Box::new(l)))
                .map_err(|e| format!("not a valid {DEAD_SCHEMA} dead letter: {e}")),
            other => Err(format!("unknown message type `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Status;

    #[test]
    fn read_by_its_type_or_by_where_it_was() {
        let event = Event::new("t", Status::Firing, "x").to_json();
        // (type, assumed, what it reads as)
        let read = |kind: Option<&str>, assumed: &str| Message::read(kind, &event, assumed);
        assert!(matches!(
            read(Some(EVENT_SCHEMA), JOB_SCHEMA),
            Ok(Message::Event(_))
        ));
        assert!(matches!(read(None, EVENT_SCHEMA), Ok(Message::Event(_))));
        let as_job = read(None, JOB_SCHEMA).unwrap_err();
        assert!(
            as_job.starts_with("not a valid alertpost.job.v1 delivery job"),
            "{as_job}"
        );
        let unknown = read(Some("x.v9"), EVENT_SCHEMA).unwrap_err();
        assert_eq!(unknown, "unknown message type `x.v9`");
        assert!(Message::read(Some(JOBS_SCHEMA), b"[]", EVENT_SCHEMA).is_ok());
        let dead = Message::read(None, b"{}", DEAD_SCHEMA).unwrap_err();
        assert!(
            dead.starts_with("not a valid alertpost.dead.v1 dead letter"),
            "{dead}"
        );
    }
}
