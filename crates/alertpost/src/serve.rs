//! The long-running commands: `worker` (with its admin server), `ingest`,
//! and `run` (both on the embedded queue, in one process).

use alertpost_config::Config;
use alertpost_producer::Producer;
use alertpost_rabbitmq::Rabbit;
use alertpost_seam::Backend;
use alertpost_worker::{Worker, WorkerOptions};
use anyhow::Context;

use crate::Failure;
use crate::cli::{Global, IngestArgs, RunArgs, WorkerArgs, load_config, process_name};
use crate::signals::Stop;

/// An admin API reachable from other hosts with no token lets anyone read
/// and replay the dead letters (whole events): said once, at start-up.
fn warn_if_open(admin: std::net::SocketAddr, config: &Config) {
    if !admin.ip().is_loopback() && config.admin.token.is_none() {
        tracing::warn!(admin = %admin, "the admin API listens beyond this host with no [admin] token: anyone who reaches it can read and replay dead letters");
    }
}

/// An ingest reachable from other hosts with no token takes events from
/// anyone who reaches it: said once, at start-up.
fn warn_if_ingest_open(listen: std::net::SocketAddr, settings: &alertpost_config::IngestSettings) {
    if !listen.ip().is_loopback() && settings.tokens.is_empty() {
        tracing::warn!(listen = %listen, "the ingest listens beyond this host with no [ingest] tokens: anyone who reaches it can publish events");
    }
}

pub async fn worker(g: &Global, args: &WorkerArgs) -> Result<(), Failure> {
    let config = load_config(g.config_path("worker")?)?;
    // The delay tiers are the config's.
    let topology = g
        .topology()?
        .with_tiers(config.delay_tiers.clone())
        .map_err(|e| Failure::Usage(e.into()))?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let store = if args.move_aside_broken_store {
        alertpost_store::Store::open_or_move_aside(&args.data_dir)
    } else {
        alertpost_store::Store::open(&args.data_dir)
    }
    .map_err(|e| Failure::Runtime(e.into()))?;
    let admin = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-addr)", args.admin_addr))?;
    tracing::info!(admin = %args.admin_addr, "admin server listening");
    warn_if_open(args.admin_addr, &config);
    let (reload, configs) = tokio::sync::mpsc::channel(1);
    tokio::spawn(crate::signals::reload_on_sighup(
        g.config_path("worker")?.to_owned(),
        reload,
    ));
    let backend = Rabbit::new(&g.amqp, &process_name("worker"), topology);
    let options = WorkerOptions {
        config,
        reload: Some(configs),
        store,
    };
    worker_with_admin(backend, options, admin, &Stop::on_signal()).await
}

pub async fn ingest(g: &Global, args: &IngestArgs) -> Result<(), Failure> {
    let topology = g.topology()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let producer = Producer::lazy(&g.amqp, topology, &process_name("ingest"));
    if !producer.ready().await {
        tracing::warn!("RabbitMQ is unreachable for now; answering 503 until it is back");
    }
    // `[ingest]` from the config when one is given; the rest of it is the
    // worker's business.
    let settings = match &g.config {
        Some(path) => load_config(path)?.ingest,
        None => alertpost_config::IngestSettings::default(),
    };
    warn_if_ingest_open(args.listen, &settings);
    tracing::info!(listen = %args.listen, "ingest listening");
    alertpost_ingest::serve(listener, producer, settings, Stop::on_signal().until()).await?;
    Ok(())
}

/// sled's cache for the embedded queue: its default (1 GiB) would be most
/// of a small install's memory.
const QUEUE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

pub async fn run_embedded(g: &Global, args: &RunArgs) -> Result<(), Failure> {
    let path = g.config_path("run")?;
    let config = load_config(path)?;
    warn_if_open(args.admin_addr, &config);
    let topology = g.topology()?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let store = alertpost_store::Store::open(&args.data_dir.join("store"))
        .map_err(|e| Failure::Runtime(e.into()))?;
    let queue = alertpost_store::queue::DurableQueue::open(
        &args.data_dir.join("queue"),
        &topology.dead_queue(),
        topology.delivery_limit(),
        QUEUE_CACHE_BYTES,
    )
    .map_err(|e| Failure::Runtime(e.into()))?;
    let admin = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-addr)", args.admin_addr))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let (reload, configs) = tokio::sync::mpsc::channel(1);
    tokio::spawn(crate::signals::reload_on_sighup(path.to_owned(), reload));
    // One signal stops both: the ingest stops taking requests, the worker
    // drains.
    let stop = Stop::on_signal();
    let backend = alertpost_embedded::Embedded::new(queue, topology);
    let producer = alertpost_embedded::EmbeddedProducer::new(backend.clone());
    let settings = config.ingest.clone();
    warn_if_ingest_open(args.listen, &settings);
    let options = WorkerOptions {
        config,
        reload: Some(configs),
        store,
    };
    tracing::info!(listen = %args.listen, admin = %args.admin_addr, data = %args.data_dir.display(), "alertpost run: ingest and worker on the embedded queue");
    let (worker, ingest) = tokio::join!(
        worker_with_admin(backend, options, admin, &stop),
        alertpost_ingest::serve(listener, producer, settings, stop.until()),
    );
    ingest?;
    worker?;
    Ok(())
}

/// A worker and its admin server on `admin`, until `stop` (the admin
/// server reads the worker's view, and stops taking requests at the
/// stop, as the worker does).
async fn worker_with_admin<B: Backend>(
    backend: B,
    options: WorkerOptions,
    admin: tokio::net::TcpListener,
    stop: &Stop,
) -> Result<(), Failure> {
    let worker = Worker::new(backend, options)?;
    let served = tokio::spawn(alertpost_admin::serve(
        admin,
        worker.view(),
        worker.backend(),
        stop.until(),
    ));
    worker.run(stop.until()).await?;
    served
        .await
        .context("the admin server failed")?
        .context("the admin server")?;
    Ok(())
}
