//! Recent attempts, or those of one event or delivery, as recorded.

use alertpost_store::AttemptRecord;
use maud::{Markup, html};

use super::{Frame, Nav, layout, urlencode, when};

pub fn attempts(
    frame: &Frame,
    q: &str,
    integration: Option<&str>,
    ids: &[String],
    found: &[AttemptRecord],
) -> Markup {
    let content = html! {
        h1 { "Attempts" }
        form.search method="get" action="/attempts" {
            label for="q" { "Event or delivery id" }
            input #q name="q" type="search" value=(q) size="40" placeholder="an event id or a delivery id";
            label for="integration" { "Integration" }
            select #integration name="integration" {
                option value="" { "any" }
                @for id in ids {
                    option value=(id) selected[integration == Some(id.as_str())] { (id) }
                }
            }
            button type="submit" { "Search" }
        }
        @if found.is_empty() {
            p.empty {
                @if q.is_empty() { "No attempts recorded by this worker." }
                @else { "No attempts of an event or delivery " code { (q) } " in this worker's store." }
            }
        } @else {
            p.hint {
                @if q.is_empty() { "The most recent " (found.len()) ", newest first." }
                @else { (found.len()) " attempts, oldest first." }
                " This worker's store: the answers (their first 4 KiB), and the requests of attempts that did not deliver."
            }
            (attempt_table(frame, found))
        }
    };
    layout(frame, "Attempts", Some(Nav::Attempts), content)
}

pub(super) fn attempt_table(frame: &Frame, found: &[AttemptRecord]) -> Markup {
    html! {
        table.attempts {
            thead { tr {
                th { "Started" } th { "Integration" } th { "Event" } th { "Delivery" } th.num { "#" }
                th { "Outcome" } th { "Answer" } th.num { "ms" } th { "Error" }
            } }
            tbody {
                @for r in found {
                    tr {
                        td { (when(frame.now, r.started_at)) }
                        td { (r.integration) }
                        td { a.id href={ "/attempts?q=" (urlencode(&r.event_id)) } { (r.event_id) } }
                        td { a.id href={ "/attempts?q=" (urlencode(&r.delivery_id)) } { (r.delivery_id) } }
                        td.num { (r.attempt) }
                        td { span class={ "outcome " (r.outcome.as_str()) } { (r.outcome.as_str()) } }
                        td {
                            @match r.status { Some(s) => { "HTTP " (s) }, None => (r.code.as_str()) }
                            @if let Some(sent) = &r.request {
                                details {
                                    summary { "request" }
                                    pre { (sent.method) " " (sent.url) "\n\n" (sent.body) }
                                }
                            }
                            @if !r.response_headers.is_empty() || r.response_body.is_some() {
                                details {
                                    summary { "answer" }
                                    pre { @for (k, v) in &r.response_headers { (k) ": " (v) "\n" } "\n" @if let Some(b) = &r.response_body { (b) } }
                                }
                            }
                        }
                        td.num { (r.duration_ms) }
                        td.error { @if let Some(e) = &r.error { (e) } }
                    }
                }
            }
        }
    }
}
