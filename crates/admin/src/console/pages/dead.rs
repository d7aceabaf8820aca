//! The dead queue: its rows, and one dead letter in full with its attempt
//! history.

use alertpost_event::job::{AttemptSummary, DeadLetter, DeliveryJob};
use alertpost_store::AttemptRecord;
use maud::{Markup, html};

use super::attempts::attempt_table;
use super::{Frame, Nav, cut, layout, pretty, stamp, urlencode, when, when_str};
use crate::deadletters::{DeadInFull, DlqRow};

/// Bytes of an unreadable message a page shows.
const RAW_SHOWN: usize = 64 * 1024;

pub fn dead_letters(
    frame: &Frame,
    integration: Option<&str>,
    rows: &Result<Vec<DlqRow>, String>,
) -> Markup {
    let content = html! {
        h1 { "Dead letters" }
        @match rows {
            Err(e) => { p.problem { "The dead queue cannot be read now: " (e) } }
            Ok(rows) => {
                div #live {
                div.toolbar {
                    @if let Some(i) = integration {
                        span { "Of " strong { (i) } " · " a href="/dead-letters" { "all" } }
                    }
                    @for i in integrations_of(rows) {
                        button.js-only type="button" data-action="replay" data-integration=(i) { "Replay all of " (i) }
                    }
                    @if !rows.is_empty() {
                        button.js-only.danger type="button" data-action="purge" { "Purge the dead queue" }
                    }
                }
                    @if rows.is_empty() {
                        p.empty { "The dead queue is empty." }
                    } @else {
                        p.hint { (rows.len()) " in the dead queue (every worker's), oldest first." }
                        table.dead {
                            thead { tr {
                                th { "Died" } th { "Integration" } th { "Reason" } th.num { "Attempts" }
                                th { "Event" } th { "Detail" } th { span.sr { "Actions" } }
                            } }
                            tbody {
                                @for r in rows {
                                    tr data-id=(r.id) {
                                        td { @match &r.dead_at { Some(t) => (when_str(frame.now, t)), None => "?" } }
                                        td { @if let Some(i) = &r.integration { (i) } }
                                        td { span.reason { (r.reason) } }
                                        td.num { (r.attempts) }
                                        td { @if let Some(e) = &r.event_id { a.id href={ "/attempts?q=" (urlencode(e)) } { (e) } } }
                                        td.detail { (r.detail) }
                                        td.actions {
                                            a href={ "/dead-letters/" (urlencode(&r.id)) } { "Show" }
                                            " "
                                            button.js-only type="button" data-action="replay" data-id=(r.id) { "Replay" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(frame, "Dead letters", Some(Nav::DeadLetters), content)
}

pub fn dead_letter(
    frame: &Frame,
    id: &str,
    full: &DeadInFull,
    recorded: &[AttemptRecord],
) -> Markup {
    let content = html! {
        p { a href="/dead-letters" { "← Dead letters" } }
        h1 { "Dead letter " code { (id) } }
        div.toolbar { button.js-only type="button" data-action="replay" data-id=(id) data-then="/dead-letters" { "Replay" } }
        @match full {
            DeadInFull::Letter(letter) => (letter_view(frame, letter)),
            DeadInFull::Event { reason, event } => {
                p { "An event the broker moved here (" (reason) "): no worker could finish it." }
                h2 { "Event" } pre { (pretty(event)) }
            }
            DeadInFull::Job { reason, job } => {
                p { "A delivery job the broker moved here (" (reason) ")." }
                (job_view(frame, job))
            }
            DeadInFull::Jobs { reason, jobs } => {
                p { "A batch of " (jobs.len()) " delivery jobs the broker moved here (" (reason) ")." }
                @for job in jobs { (job_view(frame, job)) }
            }
            DeadInFull::Unreadable { reason, error, raw } => {
                p { "A message that cannot be read (" (reason) "): " (error) }
                h2 { "Bytes" }
                pre { (cut(raw, RAW_SHOWN)) }
            }
        }
        @if !recorded.is_empty() {
            h2 { "Recorded by this worker" }
            p.hint { "Its store's attempts of this delivery, with the answers." }
            (attempt_table(frame, recorded))
        }
    };
    layout(frame, "Dead letter", Some(Nav::DeadLetters), content)
}

fn letter_view(frame: &Frame, letter: &DeadLetter) -> Markup {
    html! {
        dl.facts {
            dt { "Reason" } dd { span.reason { (letter.reason.as_str()) } }
            dt { "Detail" } dd { (letter.detail) }
            dt { "Died" } dd { (when(frame.now, letter.dead_at)) " (" (stamp(letter.dead_at)) ")" }
            dt { "Taken from" } dd { code { (letter.queue) } }
        }
        @match &letter.job {
            Some(job) => (job_view(frame, job)),
            None => {
                h2 { "Bytes" }
                pre { @if let Some(raw) = &letter.raw { (raw) } @else if let Some(b) = &letter.raw_base64 { "base64: " (b) } }
            }
        }
    }
}

fn job_view(frame: &Frame, job: &DeliveryJob) -> Markup {
    html! {
        dl.facts {
            dt { "Integration" } dd { (job.integration) }
            dt { "Delivery" } dd { a.id href={ "/attempts?q=" (urlencode(&job.delivery_id)) } { (job.delivery_id) } }
            dt { "Event" } dd { a.id href={ "/attempts?q=" (urlencode(&job.event.id)) } { (job.event.id) } }
            dt { "Attempts" } dd { (job.attempts) }
            dt { "First attempt" } dd { (when(frame.now, job.first_attempt_at)) }
            @if let Some(r) = &job.replayed { dt { "Replayed" } dd { (when(frame.now, r.at)) } }
        }
        @if !job.history.is_empty() {
            h2 { "Attempt history" }
            (history(frame, &job.history))
        }
        h2 { "Event" }
        pre { (pretty(&job.event)) }
    }
}

fn history(frame: &Frame, attempts: &[AttemptSummary]) -> Markup {
    html! {
        table.history {
            thead { tr { th.num { "#" } th { "Started" } th { "Answer" } th.num { "ms" } th { "Error" } } }
            tbody {
                @for a in attempts {
                    tr {
                        td.num { (a.attempt) }
                        td { (when(frame.now, a.started_at)) }
                        td { @match a.status { Some(s) => { "HTTP " (s) }, None => (a.code.as_str()) } }
                        td.num { (a.duration_ms) }
                        td.error { @if let Some(e) = &a.error { (e) } }
                    }
                }
            }
        }
    }
}

/// The integrations that have rows, each once, sorted.
fn integrations_of(rows: &[DlqRow]) -> Vec<&str> {
    let mut of: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.integration.as_deref())
        .collect();
    of.sort_unstable();
    of.dedup();
    of
}
