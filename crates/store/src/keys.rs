//! What the worker knows of each alert at each integration, for per-key
//! order (`order = "latest"`): the newest position taken in, and whether
//! an older delivery of it may still be waiting (for a retry, in its
//! lane). Tree `keys`: `<integration> NUL <dedup key>` → [`KeyFacts`].
//!
//! The facts only grow (a position is replaced by a newer one; written
//! through a merge that keeps the newer: [`merge`]), so a late or repeated
//! write does no harm. Most are written by the background
//! writer with the next segment; the ones a crash must not lose (a retry
//! handed off, a newer event taken in while an older one waits) are
//! written and flushed at once ([`Store::note_key_now`]). Kept for the
//! store's `max_age` after their last change, pruned with the segments.

use alertpost_event::Position;
use time::OffsetDateTime;

use crate::{Store, StoreError, Write};

/// What is kept of one alert at one integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The newest event of the alert the worker took in for it.
    pub newest: Position,
    /// An older delivery of it may still be waiting (handed to a retry or
    /// its lane): a newer event taken in must be written at once.
    pub waiting: bool,
    /// When these facts last changed, in seconds since the epoch.
    pub changed: i64,
}

impl KeyFacts {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25 + self.newest.id.len());
        out.extend_from_slice(&self.newest.at.to_be_bytes());
        out.extend_from_slice(&self.changed.to_be_bytes());
        out.push(u8::from(self.waiting));
        out.extend_from_slice(self.newest.id.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<KeyFacts> {
        let at = i128::from_be_bytes(bytes.get(..16)?.try_into().ok()?);
        let changed = i64::from_be_bytes(bytes.get(16..24)?.try_into().ok()?);
        let waiting = *bytes.get(24)? != 0;
        let id = String::from_utf8(bytes.get(25..)?.to_vec()).ok()?;
        Some(KeyFacts {
            newest: Position { at, id },
            waiting,
            changed,
        })
    }
}

/// The tree's merge: the facts of the newer position win; at one
/// position, `waiting` once said stays said (a write queued before it must
/// not take it back) and `changed` is the later.
pub(crate) fn merge(_key: &[u8], old: Option<&[u8]>, new: &[u8]) -> Option<Vec<u8>> {
    let Some(new_facts) = KeyFacts::decode(new) else {
        return old.map(<[u8]>::to_vec);
    };
    let Some(old_facts) = old.and_then(KeyFacts::decode) else {
        return Some(new.to_vec());
    };
    let kept = match old_facts.newest.cmp(&new_facts.newest) {
        std::cmp::Ordering::Less => new_facts,
        std::cmp::Ordering::Greater => old_facts,
        std::cmp::Ordering::Equal => KeyFacts {
            waiting: old_facts.waiting || new_facts.waiting,
            changed: old_facts.changed.max(new_facts.changed),
            newest: new_facts.newest,
        },
    };
    Some(kept.encode())
}

fn tree_key(integration: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(integration.len() + 1 + key.len());
    out.extend_from_slice(integration.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

impl Store {
    /// What is kept of alert `key` at `integration`, if anything.
    pub fn key_facts(&self, integration: &str, key: &str) -> Option<KeyFacts> {
        match self.inner.keys.get(tree_key(integration, key)) {
            Ok(v) => v.and_then(|v| KeyFacts::decode(&v)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an alert's order facts");
                None
            }
        }
    }

    /// Queues `facts` for the background writer (the next segment).
    /// When the writer is far behind, they are written here and now: they
    /// are never dropped.
    pub fn note_key(&self, integration: &str, key: &str, facts: &KeyFacts) {
        let write = Write::Key(tree_key(integration, key), facts.encode());
        if let Err(
            tokio::sync::mpsc::error::TrySendError::Full(Write::Key(k, v))
            | tokio::sync::mpsc::error::TrySendError::Closed(Write::Key(k, v)),
        ) = self.inner.queue.try_send(write)
            && let Err(e) = self.inner.keys.merge(k, v)
        {
            tracing::warn!(error = %e, "cannot write an alert's order facts");
        }
    }

    /// Writes `facts` and flushes them to disk before returning, on the
    /// blocking pool: for what a crash must not lose.
    pub async fn note_key_now(
        &self,
        integration: &str,
        key: &str,
        facts: &KeyFacts,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        let (k, v) = (tree_key(integration, key), facts.encode());
        tokio::task::spawn_blocking(move || {
            store.inner.keys.merge(k, v)?;
            store.inner.keys.flush()?;
            Ok::<(), StoreError>(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Applies queued facts (the writer's).
    pub(crate) fn write_keys(&self, keys: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        for (k, v) in keys {
            self.inner.keys.merge(k, v)?;
        }
        Ok(())
    }

    /// Drops the facts of alerts unchanged for longer than `max_age`.
    pub(crate) fn prune_keys(&self, max_age: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = (OffsetDateTime::now_utc() - max_age).unix_timestamp();
        let mut removed = 0;
        for entry in self.inner.keys.iter() {
            let (k, v) = entry?;
            if KeyFacts::decode(&v).is_none_or(|f| f.changed < cutoff) {
                // Removed only if unchanged since it was read.
                if self
                    .inner
                    .keys
                    .compare_and_swap(&k, Some(v), None::<&[u8]>)?
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_read_back_as_written() {
        let facts = KeyFacts {
            newest: Position {
                at: 1_765_000_000_123_456_789,
                id: "0193a5f2-evt".to_owned(),
            },
            waiting: true,
            changed: 1_765_000_000,
        };
        assert_eq!(KeyFacts::decode(&facts.encode()), Some(facts));
        assert_eq!(KeyFacts::decode(b"short"), None);
    }

    #[test]
    fn the_merge_keeps_the_newer_position_and_a_waiting_once_said() {
        let facts = |at: i128, waiting: bool, changed: i64| KeyFacts {
            newest: Position {
                at,
                id: format!("e{at}"),
            },
            waiting,
            changed,
        };
        let merged = |old: Option<KeyFacts>, new: KeyFacts| {
            let old = old.map(|o| o.encode());
            KeyFacts::decode(&merge(b"k", old.as_deref(), &new.encode()).unwrap()).unwrap()
        };
        // (stored, written) → kept
        let rows = [
            (None, facts(5, false, 1), facts(5, false, 1)),
            // A newer event taken in.
            (
                Some(facts(5, true, 1)),
                facts(7, false, 2),
                facts(7, false, 2),
            ),
            // A write queued before it, applied after: no harm.
            (
                Some(facts(7, false, 2)),
                facts(5, true, 3),
                facts(7, false, 2),
            ),
            // One position: waiting stays, the later change.
            (
                Some(facts(7, true, 2)),
                facts(7, false, 3),
                facts(7, true, 3),
            ),
            (
                Some(facts(7, false, 4)),
                facts(7, true, 3),
                facts(7, true, 4),
            ),
        ];
        for (old, new, kept) in rows {
            assert_eq!(merged(old.clone(), new.clone()), kept, "{old:?} + {new:?}");
        }
    }
}
