//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// RabbitMQ URL.
    #[arg(
        long,
        global = true,
        env = "ALERTPOST_AMQP_URL",
        default_value = alertpost_broker::DEFAULT_AMQP_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub amqp: String,
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
    /// Serve the HTTP ingest: POST /v1/events and /v1/ingest/<format>.
    Ingest(IngestArgs),
    /// Validate the config file and list every problem.
    Check,
    /// Render a sample event (or --event) for one integration and send it
    /// now, filters ignored; print the request, the response and the verdict.
    Test(TestArgs),
    /// Declare the exchange and queues, then exit.
    Setup,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Directory of this worker's attempt store.
    #[arg(long, env = "ALERTPOST_DATA_DIR", default_value = "./alertpost-data")]
    pub data_dir: PathBuf,
    /// Address of /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub admin_addr: SocketAddr,
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
pub struct IngestArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}
