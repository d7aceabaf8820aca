//! The console's pages as HTML: data in (secrets already masked), markup
//! out (maud escapes every value). No I/O here.

use alertpost_event::job::{AttemptSummary, DeadLetter, DeliveryJob};
use alertpost_store::AttemptRecord;
use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::deadletters::{DeadInFull, DlqRow};
use crate::status::IntegrationStatus;

/// What every page shows around its content.
pub struct Frame {
    pub token_required: bool,
    pub ready: bool,
    pub reason: Option<String>,
    pub now: OffsetDateTime,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Overview,
    Attempts,
    DeadLetters,
}

fn layout(frame: &Frame, title: &str, nav: Option<Nav>, content: Markup) -> Markup {
    let link = |to: Nav, href: &str, text: &str| {
        html! {
            a href=(href) aria-current=[(nav == Some(to)).then_some("page")] { (text) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · alertpost" }
                link rel="stylesheet" href="/console/console.css";
                script src="/console/console.js" defer {}
            }
            body data-token-required=(frame.token_required) {
                header {
                    span.brand { "alertpost" }
                    nav {
                        (link(Nav::Overview, "/", "Integrations"))
                        (link(Nav::Attempts, "/attempts", "Attempts"))
                        (link(Nav::DeadLetters, "/dead-letters", "Dead letters"))
                    }
                    @if frame.ready {
                        span.ready title="connected, consuming, able to publish, the store writing" { "ready" }
                    } @else {
                        span.notready title=[frame.reason.as_deref()] {
                            "not ready" @if let Some(r) = &frame.reason { ": " (r) }
                        }
                    }
                    @if frame.token_required {
                        form #token-form .js-only {
                            label for="admin-token" { "Admin token" }
                            input #admin-token type="password" autocomplete="off" placeholder="for test, replay, purge";
                            button type="submit" { "Use" }
                        }
                    }
                }
                main {
                    div #notice role="status" aria-live="polite" {}
                    (content)
                }
                footer {
                    "Rendered " (stamp(frame.now)) " by this worker. "
                    noscript { "Actions (test, replay, purge) need JavaScript; every page reads without it." }
                }
            }
        }
    }
}

/// `2026-12-01 20:15:03 UTC`.
fn stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// How long before `now`, in one unit: `12 s ago`, `3 min ago`.
fn ago(now: OffsetDateTime, t: OffsetDateTime) -> String {
    let s = (now - t).whole_seconds();
    match s {
        ..=-1 => "just now".to_owned(),
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// A time as `<time>`: relative, the exact one on hover.
fn when(now: OffsetDateTime, t: OffsetDateTime) -> Markup {
    html! {
        time datetime=(t.format(&Rfc3339).unwrap_or_default()) title=(stamp(t)) { (ago(now, t)) }
    }
}

/// An RFC 3339 string as [`when`], or as it is if it does not parse.
fn when_str(now: OffsetDateTime, t: &str) -> Markup {
    match OffsetDateTime::parse(t, &Rfc3339) {
        Ok(t) => when(now, t),
        Err(_) => html! { (t) },
    }
}

pub fn needs_token() -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "alertpost console: token needed" } }
            body {
                h1 { "The admin token is needed" }
                p { "This worker has " code { "[admin] token" } " set. Sign in with any user name and the token as the password, or send " code { "Authorization: Bearer <token>" } "." }
            }
        }
    }
}

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

fn attempt_table(frame: &Frame, found: &[AttemptRecord]) -> Markup {
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

pub fn not_found(frame: &Frame, id: &str) -> Markup {
    let content = html! {
        h1 { "No dead letter " code { (id) } }
        p { "None by that id, delivery id or event id: replayed, purged, or never dead. " a href="/dead-letters" { "The dead queue" } }
    };
    layout(frame, "Not found", Some(Nav::DeadLetters), content)
}

pub fn unavailable(frame: &Frame, error: &str) -> Markup {
    let content = html! {
        h1 { "The dead queue cannot be read now" }
        p.problem { (error) }
    };
    layout(frame, "Unavailable", Some(Nav::DeadLetters), content)
}

/// Bytes of an unreadable message a page shows.
const RAW_SHOWN: usize = 64 * 1024;

/// The start of `text`, at most `max` bytes, marked when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let end = (0..=max)
        .rev()
        .find(|n| text.is_char_boundary(*n))
        .unwrap_or(0);
    format!("{}\n[… {} more bytes]", &text[..end], text.len() - end)
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

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A query or path component: everything but unreserved characters
/// percent-encoded.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            token_required: false,
            ready: true,
            reason: None,
            now: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        }
    }

    fn status(id: &str) -> IntegrationStatus {
        IntegrationStatus {
            id: id.to_owned(),
            name: "<b>Pager</b>".to_owned(),
            url: "https://example.com/…".to_owned(),
            enabled: true,
            state: "error".to_owned(),
            since: Some("2027-01-15T08:00:00Z".to_owned()),
            reason: Some("circuit open".to_owned()),
            circuit: Some("open".to_owned()),
            delivered: 7,
            retried: 3,
            deferred: 1,
            dead: 2,
            in_flight: 0,
            last_success: None,
            last_failure: Some("2027-01-15T07:59:00Z".to_owned()),
            last_error: Some("HTTP 503".to_owned()),
        }
    }

    #[test]
    fn the_overview_holds_the_data_and_escapes_it() {
        let html = overview(&frame(), &[status("pager")]).into_string();
        assert!(html.contains("pager"));
        assert!(
            html.contains("&lt;b&gt;Pager&lt;/b&gt;"),
            "names are escaped"
        );
        assert!(!html.contains("<b>Pager"));
        assert!(html.contains(r#"data-action="test" data-integration="pager""#));
        assert!(html.contains("/dead-letters?integration=pager"));
        assert!(html.contains("HTTP 503"));
        assert!(html.contains("never"), "no success yet");
    }

    #[test]
    fn times_read_as_ago() {
        let now = frame().now;
        assert_eq!(ago(now, now - time::Duration::seconds(12)), "12 s ago");
        assert_eq!(ago(now, now - time::Duration::minutes(3)), "3 min ago");
        assert_eq!(ago(now, now - time::Duration::hours(5)), "5 h ago");
        assert_eq!(ago(now, now + time::Duration::seconds(2)), "just now");
        assert_eq!(stamp(now), "2027-01-15 08:00:00 UTC");
    }

    #[test]
    fn ids_are_encoded_in_links() {
        assert_eq!(urlencode("a b/&c"), "a%20b%2F%26c");
        assert_eq!(urlencode("evt-1_2.3~"), "evt-1_2.3~");
    }

    #[test]
    fn a_dead_queue_that_cannot_be_read_says_so() {
        let html = dead_letters(&frame(), None, &Err("connection refused".into())).into_string();
        assert!(html.contains("cannot be read now: connection refused"));
    }
}
