//! The overview: every integration, its state, circuit and counts, a Test
//! button each.

use maud::{Markup, html};

use super::{Frame, Nav, layout, urlencode, when_str};
use crate::status::IntegrationStatus;

pub fn overview(frame: &Frame, integrations: &[IntegrationStatus]) -> Markup {
    let content = html! {
        h1 { "Integrations" }
        div #live data-refresh="5" {
            @if integrations.is_empty() {
                p.empty { "No integrations in the configuration." }
            } @else {
                table.integrations {
                    thead { tr {
                        th { "Integration" } th { "State" } th { "Circuit" }
                        th.num { "Delivered" } th.num { "Retried" } th.num { "Deferred" } th.num { "Dead" }
                        th.num { "In flight" } th { "Last success" } th { "Last failure" } th { span.sr { "Actions" } }
                    } }
                    tbody {
                        @for i in integrations {
                            tr data-integration=(i.id) {
                                td {
                                    strong.id { (i.id) }
                                    @if i.name != i.id { " " span.name { (i.name) } }
                                    br; span.url { (i.url) }
                                }
                                td {
                                    span class={ "state " (i.state) } { (i.state) }
                                    @if let Some(since) = &i.since { " " (when_str(frame.now, since)) }
                                    @if let Some(reason) = &i.reason { div.reason { (reason) } }
                                }
                                td { @if let Some(c) = &i.circuit { span class={ "circuit " (c) } { (c) } } }
                                td.num { (i.delivered) }
                                td.num { (i.retried) }
                                td.num { (i.deferred) }
                                td.num { a href={ "/dead-letters?integration=" (urlencode(&i.id)) } { (i.dead) } }
                                td.num { (i.in_flight) }
                                td { @match &i.last_success { Some(t) => (when_str(frame.now, t)), None => span.none { "never" } } }
                                td {
                                    @match &i.last_failure {
                                        Some(t) => {
                                            (when_str(frame.now, t))
                                            @if let Some(e) = &i.last_error { div.error { (e) } }
                                        }
                                        None => span.none { "none" }
                                    }
                                }
                                td.actions {
                                    a href={ "/attempts?integration=" (urlencode(&i.id)) } { "Attempts" }
                                    " "
                                    button.js-only type="button" data-action="test" data-integration=(i.id) { "Test" }
                                }
                            }
                        }
                    }
                }
                p.hint { "Counts are this worker's since it started. Test sends the sample event, as " code { "alertpost test" } " does: nothing is recorded or retried." }
            }
        }
        section #trial hidden {
            h2 #trial-title { "Test delivery" }
            pre #trial-output {}
        }
    };
    layout(frame, "Integrations", Some(Nav::Overview), content)
}
