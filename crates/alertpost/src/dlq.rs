//! `alertpost dlq`: the dead queue, read and replayed either through the
//! broker (no data directory needed; works while workers run) or, with
//! `--admin ADDR`, through a running process's admin API (the only way to
//! reach the dead letters of `alertpost run`, whose queue the process holds).
//! Both go through `alertpost_admin::deadletters`.

use alertpost_admin::deadletters::{self, Replayed, Through, Which};
use alertpost_rabbitmq::Rabbit;
use anyhow::anyhow;
use serde_json::{Value, json};

use crate::Failure;
use crate::admin_client::AdminClient;
use crate::cli::DlqCommand;

/// What `dlq replay` was asked to take.
fn which(integration: &Option<String>, id: &Option<String>, all: bool) -> Result<Which, Failure> {
    match (integration, id, all) {
        (Some(i), _, _) => Ok(Which::Integration(i.clone())),
        (_, Some(id), _) => Ok(Which::Id(id.clone())),
        (_, _, true) => Ok(Which::All),
        _ => Err(Failure::Usage(anyhow!(
            "choose what to replay: --integration ID, --id ID or --all"
        ))),
    }
}

fn refuse_purge_without_yes(command: &DlqCommand) -> Result<(), Failure> {
    match command {
        DlqCommand::Purge { yes: false } => Err(Failure::Usage(anyhow!(
            "purging deletes every dead letter for good; add --yes"
        ))),
        _ => Ok(()),
    }
}

/// Through the broker: a session of its own (it declares nothing), the
/// dead queue read through the seam as the admin API reads it.
pub async fn run(backend: &Rabbit, command: &DlqCommand) -> Result<(), Failure> {
    refuse_purge_without_yes(command)?;
    // Checked before anything is taken from the queue.
    let (chosen, force) = match command {
        DlqCommand::Replay {
            integration,
            id,
            all,
            force,
        } => (Some(which(integration, id, *all)?), *force),
        _ => (None, false),
    };
    let runtime = |e: anyhow::Error| Failure::Runtime(e);
    if let DlqCommand::Purge { .. } = command {
        let n = deadletters::purge(backend)
            .await
            .map_err(|e| runtime(e.into()))?;
        outln!("purged {n} dead letters");
        return Ok(());
    }
    let done = deadletters::with_dead_queue(backend, async |session, reader| match command {
        DlqCommand::List {
            integration,
            json,
            limit,
        } => deadletters::list(reader, integration.as_deref(), *limit)
            .await
            .map_err(|e| runtime(e.into()))
            .map(|rows| {
                let rows: Vec<Value> = rows
                    .iter()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect();
                print_rows(&rows, *json)
            }),
        DlqCommand::Show { id } => match deadletters::show(reader, id).await {
            Ok(Some(full)) => {
                print_json(&serde_json::to_value(&full).unwrap_or_default());
                Ok(())
            }
            Ok(None) => Err(not_found(id)),
            Err(e) => Err(runtime(e.into())),
        },
        DlqCommand::Replay { .. } => match &chosen {
            Some(which) => deadletters::replay(reader, &Through(session), which, force)
                .await
                .map(print_replayed)
                .map_err(|e| runtime(e.into())),
            None => Ok(()),
        },
        // Taken care of above, without a reader.
        DlqCommand::Purge { .. } => Ok(()),
    })
    .await;
    done.map_err(|e| runtime(e.into()))?
}

/// Through a running process's admin API.
pub async fn run_admin(admin: &AdminClient, command: &DlqCommand) -> Result<(), Failure> {
    refuse_purge_without_yes(command)?;
    match command {
        DlqCommand::List {
            integration,
            json,
            limit,
        } => {
            let mut path = format!("/v1/dlq?limit={limit}");
            if let Some(i) = integration {
                path.push_str(&format!("&integration={}", crate::admin_client::encode(i)));
            }
            let rows: Vec<Value> = admin.get(&path).await?;
            print_rows(&rows, *json);
        }
        DlqCommand::Show { id } => {
            let path = format!("/v1/dlq/{}", crate::admin_client::encode(id));
            match admin.get_optional::<Value>(&path).await? {
                Some(full) => print_json(&full),
                None => return Err(not_found(id)),
            }
        }
        DlqCommand::Replay {
            integration,
            id,
            all,
            force,
        } => {
            let which = which(integration, id, *all)?;
            let path = if *force {
                "/v1/dlq/replay?force=true"
            } else {
                "/v1/dlq/replay"
            };
            let done: Replayed = admin.post(path, &which).await?;
            print_replayed(done);
        }
        DlqCommand::Purge { .. } => {
            let done: Value = admin.post("/v1/dlq/purge", &json!({})).await?;
            outln!("purged {} dead letters", done["purged"]);
        }
    }
    Ok(())
}

fn not_found(id: &str) -> Failure {
    Failure::Usage(anyhow!(
        "no dead letter `{id}` (by id, delivery id or event id)"
    ))
}

fn print_json(value: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn print_replayed(done: Replayed) {
    outln!("replayed {} dead letters", done.replayed);
    if done.unreadable > 0 {
        outln!(
            "{} chosen dead letters are messages that could not be read (no delivery to replay); see them with `alertpost dlq show ID`",
            done.unreadable
        );
    }
}

fn print_rows(rows: &[Value], as_json: bool) {
    if as_json {
        print_json(&Value::Array(rows.to_vec()));
        return;
    }
    if rows.is_empty() {
        outln!("no dead letters");
        return;
    }
    outln!(
        "{:<38} {:<20} {:<12} {:>8}  DETAIL",
        "ID",
        "INTEGRATION",
        "REASON",
        "ATTEMPTS"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        let detail: String = s("detail").chars().take(80).collect();
        outln!(
            "{:<38} {:<20} {:<12} {:>8}  {detail}",
            s("id"),
            s("integration"),
            s("reason"),
            r["attempts"]
        );
    }
    outln!("{} dead letters", rows.len());
}
