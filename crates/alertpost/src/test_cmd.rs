//! `alertpost test`: one real delivery to one integration, shown in full.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use alertpost_config::{Auth, Integration};
use alertpost_deliver::{AttemptResult, Client, Endpoint, Request, RequestMeta, Verdict, classify};
use alertpost_event::{Event, delivery_id};
use alertpost_render::{Context, Extra, sample};
use anyhow::{Context as _, anyhow};
use bytes::Bytes;

use crate::Failure;

/// Sends the event (or the sample) to `id`, filters ignored; prints the
/// exchange on stdout. `Ok` only when the delivery succeeded.
pub async fn run(config_path: &Path, id: &str, event_file: Option<&Path>) -> Result<(), Failure> {
    let config = alertpost_config::load(config_path).map_err(|e| Failure::Usage(e.into()))?;
    let integration = config.integration(id).ok_or_else(|| {
        let ids: Vec<&str> = config.integrations.iter().map(|i| i.id.as_str()).collect();
        Failure::Usage(anyhow!(
            "no integration `{id}` in {} (ids: {})",
            config_path.display(),
            ids.join(", ")
        ))
    })?;
    let (event, origin) = match event_file {
        Some(path) => (
            read_event(path).map_err(Failure::Usage)?,
            path.display().to_string(),
        ),
        None => (sample::full(), "the sample event".to_owned()),
    };
    let client = Client::new(config.policy.clone())?;
    let endpoint = Endpoint::new(integration, &client)?;
    let delivery = delivery_id(&event.id, &integration.id);
    let extra = Extra {
        integration_id: &integration.id,
        integration_name: &integration.name,
        routing_key: integration.routing_key.as_ref().map(|k| k.expose()),
        delivery_id: &delivery,
    };
    let event_json = Bytes::from(event.to_json());
    let body = integration
        .body
        .render(&Context::new(&event), &event_json, &extra)
        .map_err(|e| Failure::Runtime(anyhow!("{}: {e}", integration.id)))?;
    let meta = RequestMeta {
        delivery_id: &delivery,
        event_id: &event.id,
        attempt: 1,
        timestamp: unix_now(),
    };
    let (request, attempt) = client.attempt_shown(&endpoint, body, &meta).await;
    let verdict = classify(&attempt.result, &endpoint.validate);

    let secrets = secrets(integration);
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
    let _ = writeln!(out, "event       {} from {origin}", event.id);
    let _ = writeln!(out);
    show_request(&mut out, &request, &secrets);
    let _ = writeln!(out);
    match &attempt.result {
        AttemptResult::Response(r) => {
            let _ = writeln!(
                out,
                "< HTTP {} ({} ms)",
                r.status,
                attempt.duration.as_millis()
            );
            for (name, value) in &r.headers {
                let _ = writeln!(
                    out,
                    "< {name}: {}",
                    String::from_utf8_lossy(value.as_bytes())
                );
            }
            let _ = writeln!(out, "<");
            let text = mask(
                &String::from_utf8_lossy(&r.body[..r.body.len().min(4096)]),
                &secrets,
            );
            let _ = writeln!(
                out,
                "{text}{}",
                if r.body.len() > 4096 || r.truncated {
                    "\n[…]"
                } else {
                    ""
                }
            );
        }
        other => {
            let (kind, reason) = match other {
                AttemptResult::Timeout => (
                    "timeout",
                    format!("no answer within {:?}", integration.timeout),
                ),
                AttemptResult::Connect(e) => ("connect", e.clone()),
                AttemptResult::Policy(e) => ("policy", e.clone()),
                AttemptResult::Token(e) => ("token", e.clone()),
                AttemptResult::Failed(e) => ("error", e.clone()),
                AttemptResult::Response(_) => ("", String::new()),
            };
            let _ = writeln!(
                out,
                "< no response ({kind}, {} ms): {}",
                attempt.duration.as_millis(),
                mask(&reason, &secrets)
            );
        }
    }
    if !integration.validate.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "validators:");
        let body: &[u8] = match &attempt.result {
            AttemptResult::Response(r) => &r.body,
            _ => &[],
        };
        for v in &integration.validate {
            match v.check(body) {
                Ok(()) => {
                    let _ = writeln!(out, "  ok    {} in [{}]", v.path, v.expected.join(", "));
                }
                Err(e) => {
                    let _ = writeln!(out, "  FAIL  {e}");
                }
            }
        }
    }
    let _ = writeln!(out);
    let (line, ok) = match &verdict {
        Verdict::Delivered => ("result: delivered".to_owned(), true),
        Verdict::Retry { reason, .. } => (
            format!(
                "result: failed, would be retried: {}",
                mask(reason, &secrets)
            ),
            false,
        ),
        Verdict::Dead { reason, detail } => (
            format!(
                "result: failed, would be dead-lettered ({reason}): {}",
                mask(detail, &secrets)
            ),
            false,
        ),
    };
    let _ = writeln!(out, "{line}");
    out!("{out}");
    if ok {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow!(
            "the test delivery to `{}` failed",
            integration.id
        )))
    }
}

fn read_event(path: &Path) -> anyhow::Result<Event> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut event = Event::from_json(&bytes).with_context(|| path.display().to_string())?;
    event
        .prepare(time::OffsetDateTime::now_utc())
        .with_context(|| path.display().to_string())?;
    Ok(event)
}

fn show_request(out: &mut String, request: &Request, secrets: &[String]) {
    let _ = writeln!(out, "> {} {}", request.method, request.url);
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

/// Every secret of the integration, to mask wherever it might be echoed
/// (a routing key in the body, a token in a response).
fn secrets(integration: &Integration) -> Vec<String> {
    let mut s: Vec<String> = integration
        .headers
        .iter()
        .filter(|h| h.sensitive)
        .map(|h| h.value.expose().to_owned())
        .collect();
    match &integration.auth {
        Auth::Basic { password, .. } => s.push(password.expose().to_owned()),
        Auth::Bearer { token } => s.push(token.expose().to_owned()),
        Auth::OAuth2(o) => s.push(o.client_secret.expose().to_owned()),
        Auth::Header(h) => s.extend(h.iter().map(|h| h.value.expose().to_owned())),
        Auth::None => {}
    }
    s.extend(
        integration
            .routing_key
            .iter()
            .map(|k| k.expose().to_owned()),
    );
    // Short values would mask ordinary text; they are not worth hiding there.
    s.retain(|v| v.len() >= 4);
    s
}

fn mask(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |t, secret| {
        t.replace(secret.as_str(), "***")
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
