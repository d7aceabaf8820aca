//! Grafana OnCall's "formatted webhook" (none of its fields is required).
//!
//! | event | from |
//! | --- | --- |
//! | `source` | `grafana-oncall` |
//! | `status` | `state`: `alerting` or absent → `firing`, `ok` → `resolved` |
//! | `severity` | none (the format has no severity) |
//! | `title` | `title`, else the first line of `message`, else `Grafana OnCall alert` |
//! | `message` | `message` |
//! | `dedup_key` | `alert_uid` |
//! | `image_url` | `image_url` |
//! | `links` | `link_to_upstream_details` (Upstream details) |
//! | `data` | the whole payload, as sent |

use serde_json::Value;

use super::{NormalizeError, object, str_field};
use crate::event::{Event, Link, Status};

pub(super) fn normalize(doc: Value) -> Result<Vec<Event>, NormalizeError> {
    let alert = object(doc, "Grafana OnCall formatted webhook")?;
    let status = match str_field(&alert, "state") {
        None | Some("alerting") => Status::Firing,
        Some("ok") => Status::Resolved,
        Some(other) => {
            return Err(NormalizeError::new(format!(
                "Grafana OnCall formatted webhook: unknown state `{other}` (expected alerting or ok)"
            )));
        }
    };
    let message = str_field(&alert, "message").map(str::to_owned);
    let title = str_field(&alert, "title")
        .map(str::to_owned)
        .or_else(|| {
            message
                .as_deref()
                .and_then(|m| m.lines().next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "Grafana OnCall alert".to_owned());
    let mut event = Event::new("grafana-oncall", status, title);
    event.message = message;
    event.dedup_key = str_field(&alert, "alert_uid").map(str::to_owned);
    event.image_url = str_field(&alert, "image_url").map(str::to_owned);
    if let Some(href) = str_field(&alert, "link_to_upstream_details") {
        event.links.push(Link {
            href: href.to_owned(),
            text: Some("Upstream details".to_owned()),
        });
    }
    event.data = alert;
    Ok(vec![event])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Format, normalize as run};
    use serde_json::json;

    #[test]
    fn documented_payload_field_by_field() {
        let doc = json!({
            "alert_uid": "08d6891a-835c-e661-39fa-96b6a9e26552",
            "title": "The whole system is down",
            "image_url": "https://images.example.com/cat.jpg",
            "state": "alerting",
            "link_to_upstream_details": "https://status.example.com/downtime",
            "message": "Smth happened. Oh no!"
        });
        let events = run(Format::GrafanaOncall, doc).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.source, "grafana-oncall");
        assert_eq!(e.status, Status::Firing);
        assert_eq!(e.severity, None);
        assert_eq!(e.title, "The whole system is down");
        assert_eq!(e.message.as_deref(), Some("Smth happened. Oh no!"));
        assert_eq!(
            e.dedup_key.as_deref(),
            Some("08d6891a-835c-e661-39fa-96b6a9e26552")
        );
        assert_eq!(
            e.image_url.as_deref(),
            Some("https://images.example.com/cat.jpg")
        );
        assert_eq!(
            e.links,
            vec![Link {
                href: "https://status.example.com/downtime".into(),
                text: Some("Upstream details".into())
            }]
        );
        assert_eq!(e.data["state"], "alerting");
    }

    #[test]
    fn ok_resolves_and_everything_is_optional() {
        let e = &run(
            Format::GrafanaOncall,
            json!({"state": "ok", "message": "back\nup"}),
        )
        .unwrap()[0];
        assert_eq!(e.status, Status::Resolved);
        assert_eq!(e.title, "back");
        let e = &run(Format::GrafanaOncall, json!({})).unwrap()[0];
        assert_eq!(e.status, Status::Firing);
        assert_eq!(e.title, "Grafana OnCall alert");
        let err = run(Format::GrafanaOncall, json!({"state": "paused"})).unwrap_err();
        assert!(err.reason.contains("unknown state `paused`"), "{err}");
    }
}
