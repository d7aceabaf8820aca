//! SIGTERM and SIGINT: the first starts a graceful shutdown, a second one
//! exits at once.

use tokio::signal::unix::{SignalKind, signal};

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
