//! The routes, and serving them: hyper directly rather than
//! `axum::serve`, for its header read timeout and a bounded stop.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use alertpost_config::IngestSettings;
use alertpost_metrics::IngestMetrics;
use alertpost_seam::Publish;
use axum::Router;
use axum::routing::{get, post};

use crate::state::Ingest;
use crate::{BODY_TIMEOUT, BROKER_WAIT, HEADER_TIMEOUT, SHUTDOWN_WAIT, openapi, routes};

/// The ingest routes over `producer` (RabbitMQ's `alertpost_producer::Producer`,
/// or the embedded queue's), with `settings`' tokens and bound.
pub fn router<P: Publish>(producer: P, settings: &IngestSettings) -> Router {
    router_bounded(producer, settings, BODY_TIMEOUT)
}

pub(crate) fn router_bounded<P: Publish>(
    producer: P,
    settings: &IngestSettings,
    body: Duration,
) -> Router {
    Router::new()
        .route("/v1/events", post(routes::events::<P>))
        .route("/v1/ingest/{format}", post(routes::ingest::<P>))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz::<P>))
        .route("/metrics", get(routes::metrics::<P>))
        .route("/openapi.json", get(openapi::openapi_json))
        .with_state(Ingest {
            metrics: IngestMetrics::new(producer.backend()),
            producer: producer.with_timeout(BROKER_WAIT),
            tokens: Arc::new(settings.tokens.clone()),
            slots: Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent)),
            max_concurrent: settings.max_concurrent,
            body_timeout: body,
        })
}

/// How long a client may take, and a stop may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub header: Duration,
    pub body: Duration,
    pub shutdown: Duration,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            header: HEADER_TIMEOUT,
            body: BODY_TIMEOUT,
            shutdown: SHUTDOWN_WAIT,
        }
    }
}

/// Serves the ingest on `listener` until `shutdown` completes; requests in
/// progress finish first, for at most [`SHUTDOWN_WAIT`].
pub async fn serve<P: Publish>(
    listener: tokio::net::TcpListener,
    producer: P,
    settings: IngestSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_bounded(listener, producer, settings, Bounds::default(), shutdown).await
}

/// [`serve`] with other bounds than the defaults (tests use short ones).
pub async fn serve_bounded<P: Publish>(
    listener: tokio::net::TcpListener,
    producer: P,
    settings: IngestSettings,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_bounded(producer.clone(), &settings, bounds.body);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection's task, so those left after the stop's bound can be
    // ended (not left to publish after the producer is closed).
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a little, go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(bounds.header);
        let connection =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        connections.spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(bounds.shutdown, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "requests still in progress after {} ms; closing their connections",
            bounds.shutdown.as_millis()
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    producer.close().await;
    Ok(())
}
