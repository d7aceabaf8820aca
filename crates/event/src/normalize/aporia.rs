//! Aporia's monitor alert webhook (one alert per request).
//!
//! | event | from |
//! | --- | --- |
//! | `source` | `aporia` |
//! | `status` | `firing` (Aporia sends alerts only as they fire) |
//! | `severity` | `severity` through `map_severity` (`high`, `medium` → warning, `low` → info) |
//! | `title` | the first line of `pretty_description`, else `monitor_name`, else `Aporia alert` |
//! | `message` | `pretty_description` |
//! | `dedup_key` | `alert_id` |
//! | `labels` | `model_id`, `model_name`, `monitor_id`, `monitor_name`, `monitor_type` |
//! | `environment` | `environment` |
//! | `links` | `dashboard_link` (Aporia dashboard) |
//! | `data` | the whole payload, as sent |

use serde_json::Value;

use super::{NormalizeError, map_severity, object, scalar_string, str_field};
use crate::event::{Event, Link, Status};

pub(super) fn normalize(doc: Value) -> Result<Vec<Event>, NormalizeError> {
    let alert = object(doc, "Aporia webhook")?;
    let description = str_field(&alert, "pretty_description").map(str::to_owned);
    let title = description
        .as_deref()
        .and_then(|d| d.lines().next())
        .or_else(|| str_field(&alert, "monitor_name"))
        .unwrap_or("Aporia alert")
        .to_owned();
    let mut event = Event::new("aporia", Status::Firing, title);
    event.message = description;
    event.severity = str_field(&alert, "severity").and_then(map_severity);
    event.dedup_key = alert.get("alert_id").and_then(scalar_string);
    event.environment = str_field(&alert, "environment").map(str::to_owned);
    for key in [
        "model_id",
        "model_name",
        "monitor_id",
        "monitor_name",
        "monitor_type",
    ] {
        if let Some(v) = alert.get(key).and_then(scalar_string) {
            event.labels.insert(key.to_owned(), v);
        }
    }
    if let Some(href) = str_field(&alert, "dashboard_link") {
        event.links.push(Link {
            href: href.to_owned(),
            text: Some("Aporia dashboard".to_owned()),
        });
    }
    event.data = alert;
    Ok(vec![event])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Severity;
    use crate::normalize::{Format, normalize as run};
    use serde_json::json;

    #[test]
    fn documented_payload_field_by_field() {
        let doc = json!({
            "alert_id": "b1c0e6a4-2f7d-4a51-9d52-6f3e0c9a1b77",
            "monitor_type": "data_drift",
            "monitor_id": "f3a9c2d1",
            "monitor_name": "Churn model drift",
            "model_id": "churn-v3",
            "model_name": "Churn prediction",
            "severity": "medium",
            "environment": "production",
            "pretty_description": "Drift detected in feature `tenure`\nJS distance 0.31 > 0.2",
            "dashboard_link": "https://platform.aporia.com/models/churn-v3/alerts/b1c0e6a4"
        });
        let events = run(Format::Aporia, doc).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.source, "aporia");
        assert_eq!(e.status, Status::Firing);
        assert_eq!(e.severity, Some(Severity::Warning));
        assert_eq!(e.title, "Drift detected in feature `tenure`");
        assert_eq!(
            e.message.as_deref(),
            Some("Drift detected in feature `tenure`\nJS distance 0.31 > 0.2")
        );
        assert_eq!(
            e.dedup_key.as_deref(),
            Some("b1c0e6a4-2f7d-4a51-9d52-6f3e0c9a1b77")
        );
        assert_eq!(e.environment.as_deref(), Some("production"));
        assert_eq!(e.labels["model_id"], "churn-v3");
        assert_eq!(e.labels["model_name"], "Churn prediction");
        assert_eq!(e.labels["monitor_id"], "f3a9c2d1");
        assert_eq!(e.labels["monitor_name"], "Churn model drift");
        assert_eq!(e.labels["monitor_type"], "data_drift");
        assert_eq!(
            e.links[0].href,
            "https://platform.aporia.com/models/churn-v3/alerts/b1c0e6a4"
        );
        assert_eq!(e.data["severity"], "medium");
    }

    #[test]
    fn falls_back_to_monitor_name() {
        let e = &run(
            Format::Aporia,
            json!({"monitor_name": "M", "alert_id": 7, "severity": "high"}),
        )
        .unwrap()[0];
        assert_eq!(e.title, "M");
        assert_eq!(e.dedup_key.as_deref(), Some("7"));
        assert_eq!(e.severity, Some(Severity::High));
        assert!(run(Format::Aporia, json!("x")).is_err());
    }
}
