//! `alertpost attempts EVENT_ID`: every attempt of one event, from a
//! running worker's admin API or from a stopped worker's store.

use std::path::Path;

use alertpost_store::{AttemptRecord, Store, StoreError};
use anyhow::anyhow;

use crate::Failure;
use crate::admin_client::{AdminClient, encode};
use crate::cli::AttemptsArgs;

pub async fn run(args: &AttemptsArgs) -> Result<(), Failure> {
    let admin = AdminClient::from_target(&args.target)?;
    let records = match (&admin, &args.data_dir) {
        (Some(admin), _) => {
            let mut path = format!(
                "/v1/attempts?limit=10000&event_id={}",
                encode(&args.event_id)
            );
            if let Some(i) = &args.integration {
                path.push_str(&format!("&integration={}", encode(i)));
            }
            admin.get::<Vec<AttemptRecord>>(&path).await?
        }
        (None, Some(dir)) => from_store(dir, &args.event_id, args.integration.as_deref())?,
        (None, None) => {
            return Err(Failure::Usage(anyhow!(
                "say where to look: --admin ADDR (a running worker) or --data-dir DIR (a stopped one)"
            )));
        }
    };
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
        return Ok(());
    }
    if records.is_empty() {
        outln!("no attempts recorded for event {}", args.event_id);
        return Ok(());
    }
    for r in &records {
        let status = r.status.map_or("-".to_owned(), |s| s.to_string());
        let when = r
            .started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        outln!(
            "{when}  {:<20} #{:<3} {:<9} {:<7} {:>6} ms  {}",
            r.integration,
            r.attempt,
            r.outcome,
            status,
            r.duration_ms,
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn from_store(
    dir: &Path,
    event_id: &str,
    integration: Option<&str>,
) -> Result<Vec<AttemptRecord>, Failure> {
    let store = Store::open(dir).map_err(|e| match e {
        StoreError::Locked { .. } => {
            Failure::Runtime(anyhow!("{e}; ask the running worker instead: --admin ADDR"))
        }
        other => Failure::Runtime(other.into()),
    })?;
    Ok(store.attempts(Some(event_id), integration, 10_000))
}
