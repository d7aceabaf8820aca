//! Reading the record: attempts (of one event, of one delivery, the most
//! recent) and the dead letters this worker produced.

use std::time::Duration;

use alertpost_event::job::DeadLetter;
use time::OffsetDateTime;

use crate::record::{time_key, time_of};
use crate::{AttemptRecord, DELIVERY_SCAN, Store, journal, segment};

impl Store {
    /// Attempts, oldest first: of one event (and integration) when given,
    /// else the most recent; at most `limit` (the last ones).
    pub fn attempts(
        &self,
        event_id: Option<&str>,
        integration: Option<&str>,
        limit: usize,
    ) -> Vec<AttemptRecord> {
        let keep = |r: &AttemptRecord| integration.is_none_or(|i| r.integration == i);
        let mut found: Vec<AttemptRecord> = match event_id {
            Some(id) => {
                // An alertpost event id (UUID v7) says when the event was
                // made: its attempts come after that.
                let from =
                    journal::uuid_v7_time(id).map(|t| time_key(t - Duration::from_secs(60), 0));
                self.inner
                    .segments
                    .range(from.map(|k| k.to_vec()).unwrap_or_default()..)
                    .filter_map(Result::ok)
                    .filter(|(_, v)| {
                        segment::header(v).is_some_and(|h| h.events.iter().any(|e| e == id))
                    })
                    .flat_map(|(_, v)| segment::attempts(&v))
                    .filter(|r| r.event_id == id && keep(r))
                    .collect()
            }
            None => {
                let mut recent = Vec::new();
                for (_, v) in self.inner.segments.iter().rev().filter_map(Result::ok) {
                    recent.extend(segment::attempts(&v).into_iter().filter(|r| keep(r)));
                    if recent.len() >= limit {
                        break;
                    }
                }
                recent
            }
        };
        found.sort_by_key(|r| r.started_at);
        let skip = found.len().saturating_sub(limit);
        found.into_iter().skip(skip).collect()
    }

    /// Attempts of one delivery, oldest first, at most `limit`: found
    /// through its newest attempt among the last [`DELIVERY_SCAN`]
    /// segments (a delivery id, unlike an event id, is not indexed), then
    /// by its event.
    pub fn attempts_of_delivery(&self, delivery_id: &str, limit: usize) -> Vec<AttemptRecord> {
        let finder = memchr::memmem::Finder::new(delivery_id.as_bytes());
        let event = self
            .inner
            .segments
            .iter()
            .rev()
            .take(DELIVERY_SCAN)
            .filter_map(Result::ok)
            // The bytes first: decoding every segment would cost far more.
            .filter(|(_, v)| finder.find(v).is_some())
            .find_map(|(_, v)| {
                segment::attempts(&v)
                    .into_iter()
                    .find(|r| r.delivery_id == delivery_id)
                    .map(|r| r.event_id)
            });
        let Some(event) = event else {
            return Vec::new();
        };
        let mut found = self.attempts(Some(&event), None, usize::MAX);
        found.retain(|r| r.delivery_id == delivery_id);
        let skip = found.len().saturating_sub(limit);
        found.into_iter().skip(skip).collect()
    }

    /// Dead letters this worker produced, newest first.
    pub fn dead_letters(&self, integration: Option<&str>, limit: usize) -> Vec<DeadLetter> {
        self.inner
            .dead
            .iter()
            .rev()
            .filter_map(|kv| kv.ok().map(|(_, v)| v))
            .filter_map(|v| serde_json::from_slice::<DeadLetter>(&v).ok())
            .filter(|d| {
                integration.is_none_or(|i| d.job.as_ref().is_some_and(|j| j.integration == i))
            })
            .take(limit)
            .collect()
    }

    /// The time of the oldest attempt kept, for tests and tools.
    pub fn oldest_attempt(&self) -> Option<OffsetDateTime> {
        let (k, _) = self.inner.segments.first().ok()??;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_of(&k))).ok()
    }
}
