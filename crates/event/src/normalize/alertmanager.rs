//! Alertmanager webhook (version 4), and Grafana's unified alerting webhook,
//! which is the same document with extra fields.
//!
//! One event per entry of `alerts` (a group carries several):
//!
//! | event | from |
//! | --- | --- |
//! | `source` | `prometheus` for Alertmanager, `grafana` for Grafana |
//! | `status` | the alert's `status` (`firing`, `resolved`) |
//! | `severity` | `labels.severity` through `map_severity`; none if absent or unknown |
//! | `title` | `annotations.summary`, else `labels.alertname` |
//! | `message` | `annotations.description`, else `annotations.message`, else (Grafana) `valueString` |
//! | `dedup_key` | `fingerprint`, else a hash of the sorted labels |
//! | `labels`, `annotations` | the alert's own (group-wide ones are already merged in by the sender) |
//! | `links` | `generatorURL` (Source), `annotations.runbook_url` (Runbook), Grafana's `dashboardURL`, `panelURL`, `silenceURL` |
//! | `image_url` | Grafana's `imageURL` |
//! | `environment` | `labels.environment`, else `labels.env` |
//! | `occurred_at` | `startsAt` |
//! | `resolved_at` | `endsAt`, for resolved alerts only (firing ones carry a future or zero time) |
//! | `data` | `receiver`, `groupKey`, `externalURL`, `truncatedAlerts`, `fingerprint`; Grafana adds `orgId`, `values`, `valueString` |

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{NormalizeError, map_severity, object, rfc3339, str_field, string_map};
use crate::event::{Event, Link, Status};

/// The most the group-wide fields may add up to over all of a document's
/// events (each event carries them in `data`).
const MAX_COPIED_BYTES: usize = 16 * 1024 * 1024;

pub(super) fn normalize(doc: Value, source: &'static str) -> Result<Vec<Event>, NormalizeError> {
    let what = if source == "grafana" {
        "Grafana webhook"
    } else {
        "Alertmanager webhook"
    };
    let doc = object(doc, what)?;
    let Some(Value::Array(alerts)) = doc.get("alerts") else {
        return Err(NormalizeError::new(format!(
            "{what}: `alerts` must be an array of alerts"
        )));
    };
    if alerts.is_empty() {
        return Err(NormalizeError::new(format!("{what}: `alerts` is empty")));
    }
    let mut group = Map::new();
    for key in [
        "receiver",
        "groupKey",
        "externalURL",
        "truncatedAlerts",
        "orgId",
    ] {
        if let Some(v) = doc.get(key).filter(|v| !v.is_null()) {
            group.insert(key.to_owned(), v.clone());
        }
    }
    // The group-wide fields are copied into every alert's event: measured
    // first, so a long `groupKey` times many alerts is refused, not built.
    let group_bytes = serde_json::to_vec(&group).map_or(0, |v| v.len());
    let copied = group_bytes.saturating_mul(alerts.len());
    if copied > MAX_COPIED_BYTES {
        return Err(NormalizeError::new(format!(
            "{what}: its group fields ({group_bytes} bytes: receiver, groupKey, externalURL) copied into each of its {} alerts would make {copied} bytes, over the {MAX_COPIED_BYTES}-byte limit; send fewer alerts per notification or a shorter groupKey",
            alerts.len()
        )));
    }
    alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| {
            one(alert, source, &group)
                .map_err(|reason| NormalizeError::new(format!("{what}: alert {i}: {reason}")))
        })
        .collect()
}

fn one(alert: &Value, source: &str, group: &Map<String, Value>) -> Result<Event, String> {
    let Value::Object(alert) = alert else {
        return Err("must be a JSON object".to_owned());
    };
    let status = match str_field(alert, "status") {
        Some("firing") => Status::Firing,
        Some("resolved") => Status::Resolved,
        Some(other) => {
            return Err(format!(
                "unknown status `{other}` (expected firing or resolved)"
            ));
        }
        None => return Err("`status` is missing".to_owned()),
    };
    let labels = string_map(alert.get("labels"));
    let annotations = string_map(alert.get("annotations"));
    let title = annotations
        .get("summary")
        .or_else(|| labels.get("alertname"))
        .cloned()
        .unwrap_or_default();

    let mut event = Event::new(source, status, title);
    event.severity = labels.get("severity").and_then(|s| map_severity(s));
    event.message = ["description", "message"]
        .iter()
        .find_map(|k| annotations.get(*k).cloned())
        .or_else(|| str_field(alert, "valueString").map(str::to_owned));
    event.dedup_key = Some(match str_field(alert, "fingerprint") {
        Some(fp) => fp.to_owned(),
        None => labels_fingerprint(&labels),
    });
    event.environment = labels
        .get("environment")
        .or_else(|| labels.get("env"))
        .cloned();
    event.image_url = str_field(alert, "imageURL").map(str::to_owned);
    event.occurred_at = rfc3339(str_field(alert, "startsAt"));
    if status == Status::Resolved {
        event.resolved_at = rfc3339(str_field(alert, "endsAt"));
    }
    let link = |href: Option<&str>, text: &str| {
        href.map(|href| Link {
            href: href.to_owned(),
            text: Some(text.to_owned()),
        })
    };
    event.links = [
        link(str_field(alert, "generatorURL"), "Source"),
        link(
            annotations.get("runbook_url").map(String::as_str),
            "Runbook",
        ),
        link(str_field(alert, "dashboardURL"), "Dashboard"),
        link(str_field(alert, "panelURL"), "Panel"),
        link(str_field(alert, "silenceURL"), "Silence"),
    ]
    .into_iter()
    .flatten()
    .collect();

    event.data = group.clone();
    for key in ["fingerprint", "values", "valueString"] {
        if let Some(v) = alert.get(key).filter(|v| !v.is_null()) {
            event.data.insert(key.to_owned(), v.clone());
        }
    }
    event.labels = labels;
    event.annotations = annotations;
    Ok(event)
}

/// A stable stand-in for Alertmanager's fingerprint when a sender leaves it
/// out: the same labels give the same key.
fn labels_fingerprint(labels: &std::collections::BTreeMap<String, String>) -> String {
    let canonical = json!(labels).to_string();
    Uuid::new_v5(&Uuid::NAMESPACE_OID, canonical.as_bytes())
        .simple()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Severity;
    use crate::normalize::{Format, normalize as run};
    use time::macros::datetime;

    /// As Alertmanager 0.25 sends it: a group of two alerts, one resolved.
    const ALERTMANAGER: &str = r#"{
      "receiver": "alertpost",
      "status": "firing",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "HighRequestLatency", "instance": "api-1:9090",
                     "job": "api", "severity": "page", "team": "db", "env": "prod"},
          "annotations": {"summary": "High request latency on api-1",
                          "description": "p99 latency is 2.3s (threshold 1s)",
                          "runbook_url": "https://runbooks.example.com/latency"},
          "startsAt": "2026-11-25T09:58:12.123456789Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=latency",
          "fingerprint": "5d4c1b2a3f6e7d8c"
        },
        {
          "status": "resolved",
          "labels": {"alertname": "DiskFull", "instance": "db-2", "severity": "warning"},
          "annotations": {},
          "startsAt": "2026-11-25T08:00:00Z",
          "endsAt": "2026-11-25T09:00:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=disk",
          "fingerprint": "a1b2c3d4e5f60718"
        }
      ],
      "groupLabels": {"alertname": "HighRequestLatency"},
      "commonLabels": {"job": "api"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093",
      "version": "4",
      "groupKey": "{}:{alertname=\"HighRequestLatency\"}",
      "truncatedAlerts": 0
    }"#;

    /// As Grafana 10's webhook contact point sends it.
    const GRAFANA: &str = r#"{
      "receiver": "alertpost-webhook",
      "status": "firing",
      "orgId": 1,
      "alerts": [{
        "status": "firing",
        "labels": {"alertname": "CPU usage", "grafana_folder": "infra", "severity": "critical"},
        "annotations": {"description": "CPU above 95% for 5m"},
        "startsAt": "2026-11-25T10:00:00+01:00",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "https://grafana.example.com/alerting/grafana/abc/view?orgId=1",
        "fingerprint": "0f1e2d3c4b5a6978",
        "silenceURL": "https://grafana.example.com/alerting/silence/new?alertmanager=grafana",
        "dashboardURL": "https://grafana.example.com/d/xyz?orgId=1",
        "panelURL": "https://grafana.example.com/d/xyz?orgId=1&viewPanel=2",
        "values": {"B": 97.3, "C": 1},
        "valueString": "[ var='B' labels={} value=97.3 ]",
        "imageURL": "https://grafana.example.com/public/img/cpu.png"
      }],
      "groupLabels": {"alertname": "CPU usage"},
      "commonLabels": {"alertname": "CPU usage"},
      "commonAnnotations": {},
      "externalURL": "https://grafana.example.com/",
      "version": "1",
      "groupKey": "{}/{}:{alertname=\"CPU usage\"}",
      "truncatedAlerts": 0,
      "title": "[FIRING:1] CPU usage (infra)",
      "state": "alerting",
      "message": "**Firing**"
    }"#;

    #[test]
    fn a_group_copied_into_many_alerts_is_refused_before_the_copy() {
        let alerts = vec![json!({"status": "firing", "labels": {"alertname": "a"}}); 40_000];
        let doc = json!({"groupKey": "k".repeat(1024 * 1024), "alerts": alerts});
        let started = std::time::Instant::now();
        let e = normalize(doc, "prometheus").unwrap_err().to_string();
        assert!(e.contains("copied into each of its 40000 alerts"), "{e}");
        // Refused, not built (a guard, not a benchmark): 40 000 copies of
        // 1 MiB would take 40 GiB and minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A large group of small alerts still goes through.
        let alerts = vec![json!({"status": "firing", "labels": {"alertname": "a"}}); 2000];
        let doc = json!({"groupKey": "{}:{alertname=\"a\"}", "alerts": alerts});
        assert_eq!(normalize(doc, "prometheus").unwrap().len(), 2000);
    }

    #[test]
    fn alertmanager_group_field_by_field() {
        let doc: Value = serde_json::from_str(ALERTMANAGER).unwrap();
        let events = run(Format::Alertmanager, doc).unwrap();
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(e.source, "prometheus");
        assert_eq!(e.status, Status::Firing);
        assert_eq!(e.severity, Some(Severity::Critical));
        assert_eq!(e.title, "High request latency on api-1");
        assert_eq!(
            e.message.as_deref(),
            Some("p99 latency is 2.3s (threshold 1s)")
        );
        assert_eq!(e.dedup_key.as_deref(), Some("5d4c1b2a3f6e7d8c"));
        assert_eq!(e.labels["team"], "db");
        assert_eq!(e.labels.len(), 6);
        assert_eq!(
            e.annotations["runbook_url"],
            "https://runbooks.example.com/latency"
        );
        assert_eq!(e.environment.as_deref(), Some("prod"));
        assert_eq!(
            e.occurred_at,
            Some(datetime!(2026-11-25 09:58:12.123456789 UTC))
        );
        assert_eq!(e.resolved_at, None);
        assert_eq!(
            e.links,
            vec![
                Link {
                    href: "http://prometheus:9090/graph?g0.expr=latency".into(),
                    text: Some("Source".into())
                },
                Link {
                    href: "https://runbooks.example.com/latency".into(),
                    text: Some("Runbook".into())
                },
            ]
        );
        assert_eq!(e.image_url, None);
        assert_eq!(e.data["receiver"], "alertpost");
        assert_eq!(e.data["externalURL"], "http://alertmanager:9093");
        assert_eq!(e.data["groupKey"], "{}:{alertname=\"HighRequestLatency\"}");
        assert_eq!(e.data["fingerprint"], "5d4c1b2a3f6e7d8c");

        let r = &events[1];
        assert_eq!(r.status, Status::Resolved);
        assert_eq!(r.severity, Some(Severity::Warning));
        assert_eq!(r.title, "DiskFull");
        assert_eq!(r.message, None);
        assert_eq!(r.resolved_at, Some(datetime!(2026-11-25 09:00:00 UTC)));
        assert_eq!(r.environment, None);
    }

    #[test]
    fn grafana_extras_field_by_field() {
        let doc: Value = serde_json::from_str(GRAFANA).unwrap();
        let events = run(Format::Grafana, doc).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.source, "grafana");
        assert_eq!(e.status, Status::Firing);
        assert_eq!(e.severity, Some(Severity::Critical));
        assert_eq!(e.title, "CPU usage");
        assert_eq!(e.message.as_deref(), Some("CPU above 95% for 5m"));
        assert_eq!(e.dedup_key.as_deref(), Some("0f1e2d3c4b5a6978"));
        assert_eq!(
            e.image_url.as_deref(),
            Some("https://grafana.example.com/public/img/cpu.png")
        );
        assert_eq!(e.occurred_at, Some(datetime!(2026-11-25 09:00:00 UTC)));
        let texts: Vec<_> = e.links.iter().map(|l| l.text.as_deref().unwrap()).collect();
        assert_eq!(texts, ["Source", "Dashboard", "Panel", "Silence"]);
        assert_eq!(
            e.links[2].href,
            "https://grafana.example.com/d/xyz?orgId=1&viewPanel=2"
        );
        assert_eq!(e.data["orgId"], 1);
        assert_eq!(e.data["values"]["B"], 97.3);
        assert_eq!(e.data["valueString"], "[ var='B' labels={} value=97.3 ]");
    }

    #[test]
    fn missing_fingerprint_is_derived_from_labels() {
        let doc = json!({"alerts": [
            {"status": "firing", "labels": {"alertname": "A", "x": "1"}},
            {"status": "firing", "labels": {"x": "1", "alertname": "A"}},
        ]});
        let events = run(Format::Alertmanager, doc).unwrap();
        assert_eq!(events[0].dedup_key, events[1].dedup_key);
        assert_eq!(events[0].dedup_key.as_ref().unwrap().len(), 32);
    }

    #[test]
    fn refuses_what_is_not_a_webhook() {
        for (doc, expected) in [
            (json!([]), "must be a JSON object, got an array"),
            (json!({"status": "firing"}), "`alerts` must be an array"),
            (json!({"alerts": []}), "`alerts` is empty"),
            (
                json!({"alerts": [{"labels": {}}]}),
                "alert 0: `status` is missing",
            ),
            (
                json!({"alerts": [{"status": "pending"}]}),
                "alert 0: unknown status `pending`",
            ),
        ] {
            let err = run(Format::Alertmanager, doc).unwrap_err();
            assert!(err.reason.contains(expected), "{err}");
        }
    }
}
