//! The match stage: which of the runtime's integrations an event goes to.

use std::sync::Arc;

use alertpost_event::{Event, Status};

use crate::runtime::Runtime;
use crate::target::Target;

/// The integrations `event` goes to: enabled, they take its kind
/// (`kinds`) and its status (`send_resolved`), and their filter holds.
/// Those that take its kind but not the event count it as `filtered`;
/// another kind is not theirs to count (operational events would add to
/// every integration's count).
pub(crate) fn targets_for<'r>(runtime: &'r Runtime, event: &Event) -> Vec<&'r Arc<Target>> {
    runtime
        .targets
        .iter()
        .filter(|t| {
            let i = &t.integration;
            if !i.kinds.admits(&event.kind) {
                return false;
            }
            let matches =
                (i.send_resolved || event.status != Status::Resolved) && i.filter.matches(event);
            if !matches {
                crate::observe::filtered(t);
            }
            matches
        })
        .collect()
}
