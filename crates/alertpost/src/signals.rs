//! SIGTERM and SIGINT: the first starts a graceful shutdown, a second one
//! exits at once. SIGHUP: reload the config file.

use std::path::PathBuf;

use alertpost_config::Config;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// One stop for every part of a process: the first SIGTERM or SIGINT
/// completes each [`Stop::until`], however many parts wait on it.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A stop that comes with the first signal ([`shutdown`]).
    pub fn on_signal() -> Stop {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown().await;
            let _ = tx.send(true);
        });
        Stop(rx)
    }

    /// Completes once the stop has come.
    pub fn until(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

/// On each SIGHUP, reads and validates `path` again and hands the new
/// config to the worker; an invalid one is refused with its problems logged
/// and the running config stays.
pub async fn reload_on_sighup(path: PathBuf, configs: mpsc::Sender<Config>) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; config reload is unavailable");
        return;
    };
    while hup.recv().await.is_some() {
        match alertpost_config::load(&path) {
            Ok(config) => {
                tracing::info!(path = %path.display(), "SIGHUP: configuration valid; switching");
                if configs.send(config).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                for problem in &e.problems {
                    tracing::error!(%problem, "SIGHUP: configuration refused");
                }
                tracing::error!(
                    problems = e.problems.len(),
                    "SIGHUP: new configuration refused; the current one keeps running"
                );
            }
        }
    }
}

/// Completes on the first SIGTERM or SIGINT; then watches for a second one
/// and exits the process with 130 if it comes.
pub async fn shutdown() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; wait
        // forever rather than shut down at once.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down (again to exit at once)"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down (again to exit at once)"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
}
