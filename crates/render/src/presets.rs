//! The preset formats: template files under `presets/`, compiled into the
//! binary. Each has a golden test (a sample event → the exact body).
//!
//! | name | renders |
//! | --- | --- |
//! | `alertpost` | the event itself (the default) |
//! | `grafana-oncall` | Grafana OnCall's formatted webhook (`state` ok/alerting) |
//! | `ilert` | iLert's webhook payload (status PENDING/ACCEPTED/RESOLVED) |
//! | `aporia` | Aporia's alert webhook |
//! | `hertzbeat` | Apache HertzBeat's alert webhook (numeric priority and status) |
//! | `apono` | Apono's integration webhook body |
//! | `alertmanager` | an Alertmanager webhook (version 4) with one alert |
//! | `slack` | a Slack incoming-webhook message: `text` and `blocks` |
//! | `pagerduty` | PagerDuty Events API v2 (`routing_key` from the integration) |

/// `(name, template)`, every preset.
pub const PRESETS: &[(&str, &str)] = &[
    ("alertpost", include_str!("../presets/alertpost.json")),
    (
        "grafana-oncall",
        include_str!("../presets/grafana-oncall.json"),
    ),
    ("ilert", include_str!("../presets/ilert.json")),
    ("aporia", include_str!("../presets/aporia.json")),
    ("hertzbeat", include_str!("../presets/hertzbeat.json")),
    ("apono", include_str!("../presets/apono.json")),
    ("alertmanager", include_str!("../presets/alertmanager.json")),
    ("slack", include_str!("../presets/slack.json")),
    ("pagerduty", include_str!("../presets/pagerduty.json")),
];

/// The template of a preset.
pub fn preset(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The names of every preset, for error messages.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}
