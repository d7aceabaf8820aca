//! `alertpost test`: one real delivery to one integration, shown in full.

use std::path::Path;

use alertpost_admin::trial::{self, Url};
use alertpost_deliver::Client;
use alertpost_event::Event;
use alertpost_render::sample;
use anyhow::{Context as _, anyhow};

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
    let trial = trial::run(&client, integration, &event, &origin, Url::Full)
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    out!("{}", trial.text);
    if trial.delivered {
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
