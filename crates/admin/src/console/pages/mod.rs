//! The console's pages as HTML: data in (secrets already masked), markup
//! out (maud escapes every value). No I/O here.

use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod attempts;
mod dead;
mod overview;

pub use attempts::attempts;
pub use dead::{dead_letter, dead_letters};
pub use overview::overview;

/// What every page shows around its content.
pub struct Frame {
    pub token_required: bool,
    pub ready: bool,
    pub reason: Option<String>,
    pub now: OffsetDateTime,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Overview,
    Attempts,
    DeadLetters,
}

pub(super) fn layout(frame: &Frame, title: &str, nav: Option<Nav>, content: Markup) -> Markup {
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
pub(super) fn stamp(t: OffsetDateTime) -> String {
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
pub(super) fn ago(now: OffsetDateTime, t: OffsetDateTime) -> String {
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
pub(super) fn when(now: OffsetDateTime, t: OffsetDateTime) -> Markup {
    html! {
        time datetime=(t.format(&Rfc3339).unwrap_or_default()) title=(stamp(t)) { (ago(now, t)) }
    }
}

/// An RFC 3339 string as [`when`], or as it is if it does not parse.
pub(super) fn when_str(now: OffsetDateTime, t: &str) -> Markup {
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

/// The start of `text`, at most `max` bytes, marked when cut.
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let end = (0..=max)
        .rev()
        .find(|n| text.is_char_boundary(*n))
        .unwrap_or(0);
    format!("{}\n[… {} more bytes]", &text[..end], text.len() - end)
}

pub(super) fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A query or path component: everything but unreserved characters
/// percent-encoded.
pub(super) fn urlencode(s: &str) -> String {
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
    use crate::status::IntegrationStatus;

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
