//! The journal rule: what a message at hop `k` is done with, by what this
//! worker noted of its deliveries (the store's journal: handed on at a
//! hop, delivered, dead). Every job carries a hop (0 in the event, one
//! more at each hand-off); a message is done with a delivery the journal
//! has delivered, dead (unless this message is a replay, one hop above its
//! dead letter), or handed on at a hop above `k`. Read before a delivery
//! starts and again after a wait in its lane; written by the hand-off,
//! before the message is acked.

use alertpost_store::{Progress, Store};

/// Whether the journal says this delivery, as a message at `hop` carries
/// it, was already taken care of: delivered, or dead or handed on from
/// this hop or a later one (a replay of a dead delivery comes one hop
/// above its dead letter, so it goes on).
pub(crate) fn already_handled(store: &Store, delivery_id: &str, hop: u32) -> bool {
    handled(store.progress(delivery_id), hop)
}

fn handled(progress: Option<Progress>, hop: u32) -> bool {
    match progress {
        None => false,
        Some(Progress::Delivered | Progress::Superseded) => true,
        Some(Progress::Dead { hop: newest } | Progress::HandedOn { hop: newest }) => newest > hop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_rule() {
        let handed = |hop| Some(Progress::HandedOn { hop });
        let dead = |hop| Some(Progress::Dead { hop });
        // (journal, hop of the message) → already handled?
        let rows = [
            (None, 0, false),
            (Some(Progress::Delivered), 0, true),
            (Some(Progress::Delivered), 3, true),
            (Some(Progress::Superseded), 2, true),
            // A copy of the job that died came back (a lost ack)...
            (dead(2), 1, true),
            // ...but its replay comes one hop above the dead letter.
            (dead(2), 3, false),
            // The event (hop 0) came back after its delivery went to a lane.
            (handed(1), 0, true),
            // The lane's job (hop 1) itself: not handled yet.
            (handed(1), 1, false),
            // A job of hop 1 back after hop 2 was handed on: a fork.
            (handed(2), 1, true),
            (handed(2), 3, false),
        ];
        for (progress, hop, expected) in rows {
            assert_eq!(handled(progress, hop), expected, "{progress:?}, hop {hop}");
        }
    }
}
