//! One function per subcommand: the short ones here, the long-running
//! ones in [`crate::serve`], `publish` in [`crate::publish`].

use alertpost_rabbitmq::Broker;
use anyhow::anyhow;

use crate::Failure;
use crate::cli::{Cli, Command, Global, TestArgs, load_config, process_name};

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let g = &cli.global;
    match &cli.command {
        Command::Worker(args) => crate::serve::worker(g, args).await,
        Command::Publish(args) => crate::publish::run(g, args).await,
        Command::Ingest(args) => crate::serve::ingest(g, args).await,
        Command::Run(args) => crate::serve::run_embedded(g, args).await,
        Command::Check => check(g),
        Command::Test(args) => test(g, args).await,
        Command::Setup => setup(g).await,
        Command::Dlq(args) => {
            if let Some(admin) = crate::admin_client::AdminClient::from_target(&args.target)? {
                return crate::dlq::run_admin(&admin, &args.command).await;
            }
            let backend =
                alertpost_rabbitmq::Rabbit::new(&g.amqp, &process_name("dlq"), g.topology()?)
                    .without_declaring();
            crate::dlq::run(&backend, &args.command).await
        }
        Command::Attempts(args) => crate::attempts::run(args).await,
    }
}

async fn test(g: &Global, args: &TestArgs) -> Result<(), Failure> {
    let path = g.config_path("test")?;
    crate::test_cmd::run(path, &args.integration, args.event.as_deref()).await
}

fn check(g: &Global) -> Result<(), Failure> {
    let path = g.config_path("check")?;
    match alertpost_config::load(path) {
        Ok(config) => {
            outln!(
                "{}: OK ({} integrations, {} enabled)",
                path.display(),
                config.integrations.len(),
                config.enabled().count()
            );
            for i in &config.integrations {
                outln!("  {}", describe(i));
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
    let mut topology = g.topology()?;
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

/// One integration as `check` lists it: its id, state, method, URL, body,
/// auth and what else is set.
fn describe(i: &alertpost_config::Integration) -> String {
    let matchers: Vec<String> = i
        .filter
        .matchers()
        .iter()
        .map(ToString::to_string)
        .collect();
    // Always shown: it decides what the receiver ends up believing.
    let mut extra = format!(", order {}", i.order);
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
    format!(
        "{:<20} {:<8} {} {}, {}, auth {}{}{}{extra}",
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
    )
}
