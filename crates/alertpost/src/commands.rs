//! One function per subcommand.

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use alertpost_config::Config;
use alertpost_event::Event;
use alertpost_event::normalize::{Documents, Format, NormalizeError, normalize};
use alertpost_producer::{Producer, ProducerError};
use alertpost_rabbitmq::{Broker, Rabbit};
use alertpost_seam::Topology;
use anyhow::{Context, anyhow};

use crate::Failure;
use crate::cli::{Cli, Command, Global, IngestArgs, PublishArgs, RunArgs, TestArgs, WorkerArgs};

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let g = &cli.global;
    match &cli.command {
        Command::Worker(args) => worker(g, args).await,
        Command::Publish(args) => publish(g, args).await,
        Command::Ingest(args) => ingest(g, args).await,
        Command::Run(args) => run_embedded(g, args).await,
        Command::Check => check(g),
        Command::Test(args) => test(g, args).await,
        Command::Setup => setup(g).await,
        Command::Dlq(args) => {
            if let Some(admin) = crate::admin_client::AdminClient::from_target(&args.target)? {
                return crate::dlq::run_admin(&admin, &args.command).await;
            }
            let backend =
                Rabbit::new(&g.amqp, &process_name("dlq"), topology(g)?).without_declaring();
            crate::dlq::run(&backend, &args.command).await
        }
        Command::Attempts(args) => crate::attempts::run(args).await,
    }
}

fn topology(g: &Global) -> Result<Topology, Failure> {
    Topology::new(&g.prefix).map_err(|e| Failure::Usage(e.into()))
}

fn config_path<'a>(g: &'a Global, command: &str) -> Result<&'a Path, Failure> {
    g.config.as_deref().ok_or_else(|| {
        Failure::Usage(anyhow!(
            "`{command}` needs a config file: --config FILE (or ALERTPOST_CONFIG)"
        ))
    })
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    alertpost_config::load(path).map_err(|e| Failure::Usage(e.into()))
}

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

/// A name for this process in RabbitMQ: `alertpost-<role>-<host>-<pid>`.
fn process_name(role: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("alertpost-{role}-{host}-{}", std::process::id())
}

async fn worker(g: &Global, args: &WorkerArgs) -> Result<(), Failure> {
    let config = load_config(config_path(g, "worker")?)?;
    // The delay tiers are the config's.
    let topology = topology(g)?
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
        config_path(g, "worker")?.to_owned(),
        reload,
    ));
    let backend = Rabbit::new(&g.amqp, &process_name("worker"), topology);
    let options = alertpost_worker::WorkerOptions {
        config,
        admin: Some(admin),
        reload: Some(configs),
        store,
    };
    alertpost_worker::run(backend, options, crate::signals::shutdown()).await?;
    Ok(())
}

/// Events handed to the producer at once while publishing a stream: its
/// window a few times over, so memory stays that of a chunk whatever the
/// input's size, and the wait for a chunk's last confirms is a small share.
const CHUNK: usize = 2048;
/// And at most about this much input a chunk (large events: a chunk is
/// held about three times over, parsed, prepared and encoded).
const CHUNK_BYTES: usize = 2 << 20;
/// Invalid documents listed by a refused `publish`; the rest are counted.
const PROBLEMS_SHOWN: usize = 50;

/// `alertpost publish`: the input is read twice, one document at a time:
/// once to check everything (a bad document publishes nothing, and nothing
/// touches the broker), then to publish it in chunks. Stdin is spooled to
/// an unnamed temporary file for the second reading.
async fn publish(g: &Global, args: &PublishArgs) -> Result<(), Failure> {
    let format: Format = args
        .format
        .parse()
        .map_err(|e: alertpost_event::NormalizeError| Failure::Usage(anyhow!(e.reason)))?;
    let (name, mut input) = open_input(args.file.as_ref())?;

    let mut total = 0usize;
    let mut problems = Vec::new();
    let mut more = 0usize;
    let now = time::OffsetDateTime::now_utc();
    let mut docs = Documents::new(&input);
    while let Some((line, found)) = next_events(&mut docs, format) {
        // Prepared (ids, times, sizes checked) as it will be published.
        let checked = found.and_then(|mut found| {
            alertpost_event::prepare_all(&mut found, now)
                .map(|()| found.len())
                .map_err(|e| NormalizeError {
                    reason: e.source.to_string(),
                })
        });
        match checked {
            Ok(n) => total += n,
            Err(_) if problems.len() >= PROBLEMS_SHOWN => more += 1,
            Err(e) => problems.push(format!("{name}:{line}: {e}")),
        }
    }
    if !problems.is_empty() {
        let count = problems.len() + more;
        let rest = if more > 0 {
            format!("\n  ... and {more} more")
        } else {
            String::new()
        };
        return Err(Failure::Usage(anyhow!(
            "nothing published; {count} invalid document(s):\n  {}{rest}",
            problems.join("\n  ")
        )));
    }
    if total == 0 {
        return Err(Failure::Usage(anyhow!("{name}: no events in the input")));
    }

    input
        .seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot read {name} again"))?;
    let producer = Producer::connect(&g.amqp, &g.prefix, &process_name("publish"))
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    let result = publish_stream(&producer, format, &name, &input).await;
    producer.close().await;
    let published = result?;
    outln!("published {published} events");
    Ok(())
}

/// The second reading: every document normalized again and published,
/// [`CHUNK`] events at a time; the count confirmed.
async fn publish_stream(
    producer: &Producer,
    format: Format,
    name: &str,
    input: &std::fs::File,
) -> Result<usize, Failure> {
    let mut published = 0usize;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut docs = Documents::new(input);
    let mut chunk_from = 0usize;
    loop {
        let next = next_events(&mut docs, format);
        let last = next.is_none();
        if let Some((line, found)) = next {
            // Checked a moment ago: only an input changed since fails now.
            let found = found.map_err(|e| {
                Failure::Runtime(anyhow!(
                    "{name}:{line}: {e} (the input changed while it was read); {published} events published before it"
                ))
            })?;
            chunk.extend(found);
        }
        let full = chunk.len() >= CHUNK || docs.bytes_read() - chunk_from >= CHUNK_BYTES;
        if full || (last && !chunk.is_empty()) {
            chunk_from = docs.bytes_read();
            let events = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            match producer.publish_all(events).await {
                Ok(sent) => published += sent.len(),
                Err(ProducerError::Unavailable {
                    confirmed, reason, ..
                }) => {
                    return Err(Failure::Runtime(anyhow!(
                        "RabbitMQ is unavailable: {reason}; {} events published before it",
                        published + confirmed
                    )));
                }
                Err(ProducerError::Refused {
                    confirmed, source, ..
                }) => {
                    return Err(Failure::Runtime(anyhow!(
                        "RabbitMQ refused an event: {source}; {} events published before it",
                        published + confirmed
                    )));
                }
                Err(e) => {
                    return Err(Failure::Runtime(anyhow!(
                        "{e}; {published} events published before it"
                    )));
                }
            }
        }
        if last {
            return Ok(published);
        }
    }
}

/// The next document's events: `alertpost.event.v1` documents taken as
/// bytes and decoded straight into events ([`Raw::events`]), on each of
/// the two readings; other formats read as values, as their normalizers
/// need (as bytes they would be parsed twice).
///
/// [`Raw::events`]: alertpost_event::normalize::Raw::events
fn next_events<R: std::io::Read>(
    docs: &mut Documents<R>,
    format: Format,
) -> Option<(usize, Result<Vec<Event>, NormalizeError>)> {
    if format == Format::Events {
        let (line, raw) = docs.next_raw()?;
        return Some((line, raw.and_then(|raw| raw.events(format))));
    }
    let (line, doc) = docs.next()?;
    Some((line, doc.and_then(|doc| normalize(format, doc))))
}

/// The input as a file that can be read twice: the named file if it is a
/// regular one; stdin, or a pipe or device named (`<(...)`, `/dev/stdin`),
/// copied to an unnamed temporary file (removed when closed).
fn open_input(file: Option<&PathBuf>) -> Result<(String, std::fs::File), Failure> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            let name = path.display().to_string();
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("cannot read {name}"))
                .map_err(Failure::Usage)?;
            if f.metadata().is_ok_and(|m| m.is_file()) {
                return Ok((name, f));
            }
            let spooled = spool(&mut f, &name)?;
            Ok((name, spooled))
        }
        _ => {
            let spooled = spool(&mut std::io::stdin().lock(), "stdin")?;
            Ok(("stdin".to_owned(), spooled))
        }
    }
}

fn spool(input: &mut impl std::io::Read, name: &str) -> Result<std::fs::File, Failure> {
    let mut spool = tempfile::tempfile()
        .with_context(|| format!("cannot create a temporary file to read {name} into"))?;
    std::io::copy(input, &mut spool)
        .with_context(|| format!("cannot read {name} into a temporary file"))?;
    spool
        .seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot read {name}'s temporary file"))?;
    Ok(spool)
}

async fn ingest(g: &Global, args: &IngestArgs) -> Result<(), Failure> {
    let topology = topology(g)?;
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
    alertpost_ingest::serve(listener, producer, settings, crate::signals::shutdown()).await?;
    Ok(())
}

/// sled's cache for the embedded queue: its default (1 GiB) would be most
/// of a small install's memory.
const QUEUE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

async fn run_embedded(g: &Global, args: &RunArgs) -> Result<(), Failure> {
    let path = config_path(g, "run")?;
    let config = load_config(path)?;
    warn_if_open(args.admin_addr, &config);
    let topology = topology(g)?;
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
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::signals::shutdown().await;
        let _ = stop.send(true);
    });
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let backend = alertpost_embedded::Embedded::new(queue, topology);
    let producer = alertpost_embedded::EmbeddedProducer::new(backend.clone());
    let settings = config.ingest.clone();
    warn_if_ingest_open(args.listen, &settings);
    let options = alertpost_worker::WorkerOptions {
        config,
        admin: Some(admin),
        reload: Some(configs),
        store,
    };
    tracing::info!(listen = %args.listen, admin = %args.admin_addr, data = %args.data_dir.display(), "alertpost run: ingest and worker on the embedded queue");
    let (worker, ingest) = tokio::join!(
        alertpost_worker::run(backend, options, until(stopped.clone())),
        alertpost_ingest::serve(listener, producer, settings, until(stopped)),
    );
    ingest?;
    worker?;
    Ok(())
}

async fn test(g: &Global, args: &TestArgs) -> Result<(), Failure> {
    let path = config_path(g, "test")?;
    crate::test_cmd::run(path, &args.integration, args.event.as_deref()).await
}

fn check(g: &Global) -> Result<(), Failure> {
    let path = config_path(g, "check")?;
    match alertpost_config::load(path) {
        Ok(config) => {
            outln!(
                "{}: OK ({} integrations, {} enabled)",
                path.display(),
                config.integrations.len(),
                config.enabled().count()
            );
            for i in &config.integrations {
                let matchers: Vec<String> = i
                    .filter
                    .matchers()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let mut extra = String::new();
                if let Some(limit) = i.rate_limit {
                    extra.push_str(&format!(", rate_limit {limit}"));
                }
                match &i.kinds {
                    alertpost_config::Kinds::Any => extra.push_str(", kinds *"),
                    alertpost_config::Kinds::Only(k) if *k != ["alert"] => {
                        extra.push_str(&format!(", kinds {}", k.join(" ")));
                    }
                    alertpost_config::Kinds::Only(_) => {}
                }
                if !i.send_resolved {
                    extra.push_str(", no resolved");
                }
                if let Some(proxy) = &i.proxy {
                    extra.push_str(&format!(", proxy {}", proxy.shown));
                }
                if let Some(tls) = &i.tls {
                    let mut parts = Vec::new();
                    if tls.ca_pem.is_some() {
                        parts.push("own CA".to_owned());
                    }
                    if tls.identity_pem.is_some() {
                        parts.push("client certificate".to_owned());
                    }
                    if let Some(name) = &tls.server_name {
                        parts.push(format!("server name {name}"));
                    }
                    if let Some(v) = tls.min_version {
                        parts.push(format!("min {v}"));
                    }
                    extra.push_str(&format!(", tls ({})", parts.join(", ")));
                }
                outln!(
                    "  {:<20} {:<8} {} {}, {}, auth {}{}{}{extra}",
                    i.id,
                    if i.enabled { "enabled" } else { "disabled" },
                    i.method,
                    i.url_for_logs(),
                    i.body_source,
                    i.auth.kind(),
                    if i.signing_key.is_some() {
                        ", signed"
                    } else {
                        ""
                    },
                    if matchers.is_empty() {
                        String::new()
                    } else {
                        format!(", match {}", matchers.join(" "))
                    },
                );
            }
            Ok(())
        }
        Err(e) => {
            for problem in &e.problems {
                outln!("{problem}");
            }
            Err(Failure::Usage(anyhow!(
                "{}: {} problem(s)",
                path.display(),
                e.problems.len()
            )))
        }
    }
}

async fn setup(g: &Global) -> Result<(), Failure> {
    let mut topology = topology(g)?;
    // With a config, its delay tiers and its integrations' lanes; else the
    // default tiers.
    let mut lanes = Vec::new();
    if let Some(path) = &g.config {
        let config = load_config(path)?;
        lanes = config.integrations.iter().map(|i| i.id.clone()).collect();
        topology = topology
            .with_tiers(config.delay_tiers)
            .map_err(|e| Failure::Usage(e.into()))?;
    }
    let broker = Broker::connect(&g.amqp, &process_name("setup"), topology)
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    let declared = match broker.declare().await {
        Ok(()) => broker.declare_lanes(&lanes).await,
        Err(e) => Err(e),
    };
    broker.close().await;
    declared.map_err(|e| Failure::Runtime(e.into()))?;
    let t = broker.topology();
    let mut queues = t.queues();
    queues.extend(lanes.iter().map(|id| t.lane_queue(id)));
    outln!(
        "declared exchange {} and queues {}",
        t.exchange(),
        queues.join(", ")
    );
    Ok(())
}
