//! `alertpost attempts EVENT_ID`: every attempt of one event, from a
//! running worker's admin API or from a stopped worker's store.

use std::path::Path;

use alertpost_store::{AttemptRecord, Store, StoreError};
use anyhow::anyhow;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Failure;
use crate::cli::AttemptsArgs;

pub async fn run(args: &AttemptsArgs) -> Result<(), Failure> {
    let records = match (&args.admin, &args.data_dir) {
        (Some(admin), _) => from_admin(admin, &args.event_id, args.integration.as_deref()).await?,
        (None, Some(dir)) => from_store(dir, &args.event_id, args.integration.as_deref())?,
        (None, None) => {
            return Err(Failure::Usage(anyhow!(
                "say where to look: --admin ADDR (a running worker) or --data-dir DIR (a stopped one)"
            )));
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
        return Ok(());
    }
    if records.is_empty() {
        println!("no attempts recorded for event {}", args.event_id);
        return Ok(());
    }
    for r in &records {
        let status = r.status.map_or("-".to_owned(), |s| s.to_string());
        let when = r
            .started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!(
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

/// A GET on the admin API (plain HTTP on a private address).
async fn from_admin(
    admin: &str,
    event_id: &str,
    integration: Option<&str>,
) -> Result<Vec<AttemptRecord>, Failure> {
    let addr = admin.trim_start_matches("http://").trim_end_matches('/');
    let mut path = format!("/v1/attempts?limit=10000&event_id={}", encode(event_id));
    if let Some(i) = integration {
        path.push_str(&format!("&integration={}", encode(i)));
    }
    let fail = |e: String| Failure::Runtime(anyhow!("admin API at {addr}: {e}"));
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("not an HTTP answer".to_owned()))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(fail(head.lines().next().unwrap_or("").to_owned()));
    }
    serde_json::from_str(body).map_err(|e| fail(e.to_string()))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
