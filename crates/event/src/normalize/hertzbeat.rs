//! Apache HertzBeat's alert webhook (one alarm record per request).
//!
//! | event | from |
//! | --- | --- |
//! | `source` | `hertzbeat` |
//! | `status` | `status`: 0 (to be processed) and 1 (triggered, count not yet reached) → `firing`, 2 (recovered) → `resolved`, 3 (processed) → `acknowledged` |
//! | `severity` | `priority`: 0 (emergency) → `critical`, 1 (critical) → `high`, 2 (warning) → `warning` |
//! | `title` | the first line of `content` |
//! | `message` | `content` |
//! | `dedup_key` | `id` (the alarm record) |
//! | `labels` | `tags` (or `tag`), scalar values as strings, plus `target` and `alertDefineId` |
//! | `occurred_at` | `firstTriggerTime` (ms), else `gmtCreate` |
//! | `resolved_at` | for recovered alarms, `gmtUpdate` |
//! | `data` | the whole payload, as sent |
//!
//! HertzBeat writes `gmtCreate`/`gmtUpdate` without an offset; they are read
//! as UTC. Numeric fields may arrive as numbers or numeric strings.

use serde_json::Value;
use time::{OffsetDateTime, PrimitiveDateTime, macros::format_description};

use super::{NormalizeError, as_i64, epoch_millis, object, scalar_string, str_field, string_map};
use crate::event::{Event, Severity, Status};

pub(super) fn normalize(doc: Value) -> Result<Vec<Event>, NormalizeError> {
    let alert = object(doc, "HertzBeat webhook")?;
    let err = |reason: String| NormalizeError::new(format!("HertzBeat webhook: {reason}"));

    let status = match alert.get("status").and_then(as_i64) {
        Some(0 | 1) => Status::Firing,
        Some(2) => Status::Resolved,
        Some(3) => Status::Acknowledged,
        Some(n) => return Err(err(format!("unknown status {n} (expected 0 to 3)"))),
        None => return Err(err("`status` is missing or not a number".to_owned())),
    };
    let content =
        str_field(&alert, "content").ok_or_else(|| err("`content` is missing".to_owned()))?;
    let title = content.lines().next().unwrap_or(content).to_owned();

    let mut event = Event::new("hertzbeat", status, title);
    event.message = Some(content.to_owned());
    event.severity = match alert.get("priority").and_then(as_i64) {
        Some(0) => Some(Severity::Critical),
        Some(1) => Some(Severity::High),
        Some(2) => Some(Severity::Warning),
        _ => None,
    };
    event.dedup_key = alert.get("id").and_then(scalar_string);
    event.labels = string_map(alert.get("tags").or_else(|| alert.get("tag")));
    for key in ["target", "alertDefineId"] {
        if let Some(v) = alert.get(key).and_then(scalar_string) {
            event.labels.insert(key.to_owned(), v);
        }
    }
    event.occurred_at = epoch_millis(alert.get("firstTriggerTime"))
        .or_else(|| local_time(str_field(&alert, "gmtCreate")));
    if status == Status::Resolved {
        event.resolved_at = local_time(str_field(&alert, "gmtUpdate"));
    }
    event.data = alert;
    Ok(vec![event])
}

/// `2022-02-25T13:32:13` (no offset), read as UTC.
fn local_time(s: Option<&str>) -> Option<OffsetDateTime> {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let s = s?;
    // Some versions add fractions of a second; they do not matter here.
    let s = s.split('.').next().unwrap_or(s);
    Some(PrimitiveDateTime::parse(s, format).ok()?.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Format, normalize as run};
    use serde_json::json;
    use time::macros::datetime;

    /// The example from HertzBeat's documentation, with trigger times added
    /// as its field table describes them.
    fn sample() -> Value {
        json!({
            "id": 76456,
            "target": "available",
            "alertDefineId": 232,
            "priority": 0,
            "content": "监控紧急可用性告警: UN_CONNECTABLE",
            "tag": {"monitorId": 3543534545u64, "monitorName": "API_poetry.didi.top"},
            "status": 0,
            "times": 1,
            "firstTriggerTime": 1645795933000u64,
            "lastTriggerTime": 1645795933000u64,
            "gmtCreate": "2022-02-25T13:32:13",
            "gmtUpdate": "2022-02-25T13:32:13"
        })
    }

    #[test]
    fn documented_payload_field_by_field() {
        let events = run(Format::Hertzbeat, sample()).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.source, "hertzbeat");
        assert_eq!(e.status, Status::Firing);
        assert_eq!(e.severity, Some(Severity::Critical));
        assert_eq!(e.title, "监控紧急可用性告警: UN_CONNECTABLE");
        assert_eq!(
            e.message.as_deref(),
            Some("监控紧急可用性告警: UN_CONNECTABLE")
        );
        assert_eq!(e.dedup_key.as_deref(), Some("76456"));
        assert_eq!(e.labels["monitorName"], "API_poetry.didi.top");
        assert_eq!(e.labels["monitorId"], "3543534545");
        assert_eq!(e.labels["target"], "available");
        assert_eq!(e.labels["alertDefineId"], "232");
        assert_eq!(e.occurred_at, Some(datetime!(2022-02-25 13:32:13 UTC)));
        assert_eq!(e.resolved_at, None);
        assert_eq!(e.data["times"], 1);
        assert_eq!(e.data["id"], 76456);
    }

    #[test]
    fn recovered_with_string_numbers_and_tags() {
        let mut doc = sample();
        doc["status"] = json!("2");
        doc["priority"] = json!("1");
        doc["gmtUpdate"] = json!("2022-02-25T14:00:00");
        doc.as_object_mut().unwrap().remove("firstTriggerTime");
        doc.as_object_mut().unwrap().remove("tag");
        doc["tags"] = json!({"env": "prod"});
        let e = &run(Format::Hertzbeat, doc).unwrap()[0];
        assert_eq!(e.status, Status::Resolved);
        assert_eq!(e.severity, Some(Severity::High));
        assert_eq!(e.labels["env"], "prod");
        assert_eq!(e.occurred_at, Some(datetime!(2022-02-25 13:32:13 UTC)));
        assert_eq!(e.resolved_at, Some(datetime!(2022-02-25 14:00:00 UTC)));
    }

    #[test]
    fn status_three_is_acknowledged_and_bad_status_refused() {
        let mut doc = sample();
        doc["status"] = json!(3);
        assert_eq!(
            run(Format::Hertzbeat, doc.clone()).unwrap()[0].status,
            Status::Acknowledged
        );
        doc["status"] = json!(9);
        let err = run(Format::Hertzbeat, doc.clone()).unwrap_err();
        assert!(err.reason.contains("unknown status 9"), "{err}");
        doc["status"] = json!(0);
        doc.as_object_mut().unwrap().remove("content");
        let err = run(Format::Hertzbeat, doc).unwrap_err();
        assert!(err.reason.contains("`content` is missing"), "{err}");
    }
}
