//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::path::Path;

use alertpost_config::Config;
use alertpost_seam::Topology;
use anyhow::anyhow;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "alertpost",
    version,
    about = "Deliver alert events to webhooks: durably, fast, and in the format each receiver expects.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after its name.
#[derive(Debug, Args)]
pub struct Global {
    /// RabbitMQ URL, or several separated by commas (the nodes of a cluster:
    /// connecting tries them in turn, from a random one).
    #[arg(
        long,
        global = true,
        env = "ALERTPOST_AMQP_URL",
        default_value = alertpost_rabbitmq::DEFAULT_AMQP_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub amqp: String,
    /// A file holding the RabbitMQ URL(s), in place of --amqp: a command
    /// line (and the password in it) is visible to every user in `ps`.
    #[arg(long, global = true, env = "ALERTPOST_AMQP_URL_FILE")]
    pub amqp_file: Option<PathBuf>,
    /// Prefix of the exchange and queue names.
    #[arg(
        long,
        global = true,
        env = "ALERTPOST_PREFIX",
        default_value = "alertpost"
    )]
    pub prefix: String,
    /// Log format on stderr; the filter comes from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Integrations config file (TOML).
    #[arg(long, global = true, env = "ALERTPOST_CONFIG")]
    pub config: Option<PathBuf>,
}

impl Global {
    /// The topology of `--prefix`, with the default delay tiers.
    pub fn topology(&self) -> Result<Topology, Failure> {
        Topology::new(&self.prefix).map_err(|e| Failure::Usage(e.into()))
    }

    /// `--config`, which `command` needs.
    pub fn config_path(&self, command: &str) -> Result<&Path, Failure> {
        self.config.as_deref().ok_or_else(|| {
            Failure::Usage(anyhow!(
                "`{command}` needs a config file: --config FILE (or ALERTPOST_CONFIG)"
            ))
        })
    }
}

/// The config file at `path`, validated; an invalid one is a usage error.
pub fn load_config(path: &Path) -> Result<Config, Failure> {
    alertpost_config::load(path).map_err(|e| Failure::Usage(e.into()))
}

/// A name for this process in RabbitMQ: `alertpost-<role>-<host>-<pid>`.
pub fn process_name(role: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("alertpost-{role}-{host}-{}", std::process::id())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume events and deliver them to the configured integrations.
    Worker(WorkerArgs),
    /// Publish events from a file or stdin (one JSON document, or NDJSON).
    Publish(PublishArgs),
    /// Serve the HTTP ingest: POST /v1/events and /v1/ingest/<format>
    /// (with --config, its `[ingest]` tokens and bound apply).
    Ingest(IngestArgs),
    /// The ingest and a worker in one process, on an embedded durable queue
    /// under --data-dir: no RabbitMQ (a single node; see README).
    Run(RunArgs),
    /// Validate the config file and list every problem.
    Check,
    /// Render a sample event (or --event) for one integration and send it
    /// now, filters ignored; print the request, the response and the verdict.
    Test(TestArgs),
    /// Declare the exchange and queues, then exit.
    Setup,
    /// Dead letters: list, show, replay, purge (through the broker, or
    /// with --admin through a running worker's or `alertpost run`'s admin API).
    Dlq(DlqArgs),
    /// The attempts of one event: from a running worker's admin API, or
    /// from a stopped worker's store.
    Attempts(AttemptsArgs),
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters.
    List {
        #[arg(long)]
        integration: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        /// Read at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Show one dead letter in full (by its id, delivery id or event id).
    Show { id: String },
    /// Send dead letters back to be delivered, attempts reset.
    Replay {
        #[arg(long, group = "which")]
        integration: Option<String>,
        #[arg(long, group = "which")]
        id: Option<String>,
        #[arg(long, group = "which")]
        all: bool,
        /// Send each even if its alert had a newer event since (per-key
        /// order would supersede it): the receiver may go back to an older
        /// state.
        #[arg(long)]
        force: bool,
    },
    /// Delete every dead letter.
    Purge {
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// A running process's admin API; its token comes from
/// ALERTPOST_ADMIN_TOKEN or --admin-token-file.
#[derive(Debug, Args)]
pub struct AdminTarget {
    /// A running worker's (or `alertpost run`'s) admin address, e.g.
    /// 127.0.0.1:9464.
    #[arg(long, global = true)]
    pub admin: Option<String>,
    /// A file holding the admin API's token (`[admin] token`); else
    /// ALERTPOST_ADMIN_TOKEN.
    #[arg(long, global = true)]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub target: AdminTarget,
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Args)]
pub struct AttemptsArgs {
    pub event_id: String,
    #[command(flatten)]
    pub target: AdminTarget,
    /// A stopped worker's data directory.
    #[arg(long, env = "ALERTPOST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub integration: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Directory of this worker's attempt store.
    #[arg(long, env = "ALERTPOST_DATA_DIR", default_value = "./alertpost-data")]
    pub data_dir: PathBuf,
    /// Address of the admin API (/healthz, /readyz, /metrics, attempts).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub admin_addr: SocketAddr,
    /// If the store cannot be opened (not because another worker holds it),
    /// move it aside and start a new one instead of failing.
    #[arg(long)]
    pub move_aside_broken_store: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Format of the input: events (alertpost.event.v1), alertmanager,
    /// grafana, hertzbeat, grafana-oncall, aporia.
    #[arg(long, default_value = "events")]
    pub format: String,
    /// Input file; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The integration's id.
    #[arg(long)]
    pub integration: String,
    /// An event to send (alertpost.event.v1 JSON) instead of the sample.
    #[arg(long)]
    pub event: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory of the queue (the source of truth) and the attempt store.
    #[arg(long, env = "ALERTPOST_DATA_DIR", default_value = "./alertpost-data")]
    pub data_dir: PathBuf,
    /// Address of the ingest.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the admin API (/healthz, /readyz, /metrics, attempts).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub admin_addr: SocketAddr,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}
