//! A test delivery: one real request to one integration, filters ignored,
//! nothing recorded or retried, shown in full with its secrets masked.
//! `alertpost test` prints it; the console's Test button
//! (`POST /v1/integrations/{id}/test`) shows the same text.

use std::fmt::Write as _;

use alertpost_config::{Integration, mask};
use alertpost_deliver::{
    Answer, Client, Endpoint, Exchange, Request, RequestMeta, Verdict, classify,
};
use alertpost_event::{Event, delivery_id};
use alertpost_render::Context;
use bytes::Bytes;

/// What a test delivery did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Trial {
    /// The receiver took it.
    pub delivered: bool,
    /// What a real delivery would do next: `delivered`, `retry` or `dead`.
    pub outcome: &'static str,
    /// The exchange as `alertpost test` prints it: the request, the
    /// answer, the validators, the result.
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    #[error(transparent)]
    Endpoint(#[from] alertpost_deliver::request::EndpointError),
    #[error("{integration}: {error}")]
    Render { integration: String, error: String },
}

/// How much of the destination the text shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Url {
    /// Whole: for the operator at the command line, who has the config.
    Full,
    /// Scheme, host and port: for API answers (paths carry tokens).
    Origin,
}

/// Sends `event` (described as `from`: "the sample event", a file's name)
/// to `integration` through `client`.
pub async fn run(
    client: &Client,
    integration: &Integration,
    event: &Event,
    from: &str,
    url: Url,
) -> Result<Trial, TrialError> {
    let endpoint = Endpoint::new(integration, client)?;
    let delivery = delivery_id(&event.id, &integration.id);
    let event_json = Bytes::from(event.to_json());
    let body = integration
        .render_body(&event_json, Some(&Context::new(event)), &delivery)
        .map_err(|e| TrialError::Render {
            integration: integration.id.clone(),
            error: e.to_string(),
        })?;
    let meta = RequestMeta::now(&delivery, &event.id, 1);
    let (request, attempt) = client.deliver_shown(&endpoint, body, &meta).await;
    let verdict = classify(&attempt.result, &endpoint.validate);

    let secrets = integration.secret_values();
    let mut out = String::new();
    let enabled = if integration.enabled {
        ""
    } else {
        ", disabled"
    };
    let _ = writeln!(
        out,
        "integration {} ({}{enabled}), {}",
        integration.id, integration.name, integration.body_source
    );
    let _ = writeln!(out, "event       {} from {from}", event.id);
    let _ = writeln!(out);
    let shown_url = match url {
        Url::Full => request.url.to_string(),
        Url::Origin => alertpost_config::url_origin(&integration.url),
    };
    show_request(&mut out, &request, &shown_url, &secrets);
    let _ = writeln!(out);
    show_answer(&mut out, &attempt, integration, &secrets);
    if !integration.validate.is_empty() {
        let body: &[u8] = match &attempt.result {
            Answer::Response(r) => &r.body,
            _ => &[],
        };
        show_validators(&mut out, integration, body, &secrets);
    }
    let _ = writeln!(out);
    let (line, outcome) = result(&verdict, &secrets);
    let _ = writeln!(out, "{line}");
    Ok(Trial {
        delivered: matches!(verdict, Verdict::Delivered),
        outcome,
        text: out,
    })
}

/// What came back: the status, headers and the start of the body, or how
/// the attempt failed.
fn show_answer(
    out: &mut String,
    attempt: &Exchange,
    integration: &Integration,
    secrets: &[String],
) {
    let ms = attempt.duration.as_millis();
    let (kind, reason) = match &attempt.result {
        Answer::Response(r) => {
            let _ = writeln!(out, "< HTTP {} ({ms} ms)", r.status);
            for (name, value) in &r.headers {
                let _ = writeln!(
                    out,
                    "< {name}: {}",
                    mask(&String::from_utf8_lossy(value.as_bytes()), secrets)
                );
            }
            let _ = writeln!(out, "<");
            let text = mask(
                &String::from_utf8_lossy(&r.body[..r.body.len().min(4096)]),
                secrets,
            );
            let more = if r.body.len() > 4096 || r.truncated {
                "\n[…]"
            } else {
                ""
            };
            let _ = writeln!(out, "{text}{more}");
            return;
        }
        Answer::Timeout => (
            "timeout",
            format!("no answer within {:?}", integration.timeout),
        ),
        Answer::Connect(e) => ("connect", e.clone()),
        Answer::Policy(e) => ("policy", e.clone()),
        Answer::Token(e) => ("token", e.clone()),
        Answer::Failed(e) => ("error", e.clone()),
    };
    let _ = writeln!(
        out,
        "< no response ({kind}, {ms} ms): {}",
        mask(&reason, secrets)
    );
}

/// Each of the integration's validators against the answer's body.
fn show_validators(out: &mut String, integration: &Integration, body: &[u8], secrets: &[String]) {
    let _ = writeln!(out);
    let _ = writeln!(out, "validators:");
    for v in &integration.validate {
        match v.check(body) {
            Ok(()) => {
                let _ = writeln!(out, "  ok    {} in [{}]", v.path, v.expected.join(", "));
            }
            Err(e) => {
                let _ = writeln!(out, "  FAIL  {}", mask(&e.to_string(), secrets));
            }
        }
    }
}

/// The last line, and what a real delivery would do next.
fn result(verdict: &Verdict, secrets: &[String]) -> (String, &'static str) {
    match verdict {
        Verdict::Delivered => ("result: delivered".to_owned(), "delivered"),
        Verdict::Retry { reason, .. } => (
            format!(
                "result: failed, would be retried: {}",
                mask(reason, secrets)
            ),
            "retry",
        ),
        Verdict::Dead { reason, detail } => (
            format!(
                "result: failed, would be dead-lettered ({reason}): {}",
                mask(detail, secrets)
            ),
            "dead",
        ),
    }
}

fn show_request(out: &mut String, request: &Request, url: &str, secrets: &[String]) {
    let _ = writeln!(out, "> {} {url}", request.method);
    let _ = writeln!(out, "> user-agent: {}", alertpost_deliver::USER_AGENT);
    for (name, value) in &request.headers {
        let shown = if value.is_sensitive() {
            "*** (masked)".to_owned()
        } else {
            mask(&String::from_utf8_lossy(value.as_bytes()), secrets)
        };
        let _ = writeln!(out, "> {name}: {shown}");
    }
    let _ = writeln!(out, ">");
    let _ = writeln!(
        out,
        "{}",
        mask(&String::from_utf8_lossy(&request.body), secrets)
    );
}
