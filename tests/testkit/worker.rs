//! A worker running in the test's process.

use std::net::SocketAddr;
use std::time::Duration;

use alertpost_worker::{WorkerError, WorkerOptions};
use tokio::sync::{mpsc, oneshot};

use crate::TestPrefix;

pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    /// The worker's store directory (removed when the worker is dropped).
    pub data: tempfile::TempDir,
    pub store: alertpost_store::Store,
    reload: mpsc::Sender<alertpost_config::Config>,
    lanes: crate::prefix::Lanes,
    handle: tokio::task::JoinHandle<Result<(), WorkerError>>,
    pub admin: SocketAddr,
}

impl RunningWorker {
    /// Starts a worker for `prefix` with the config in `toml`, and waits
    /// until it is consuming (its `/readyz` says so).
    pub async fn start(prefix: &TestPrefix, toml: &str) -> RunningWorker {
        let worker = RunningWorker::spawn(prefix, &prefix.url, toml).await;
        worker.wait_ready(Duration::from_secs(20)).await;
        worker
    }

    /// Starts a worker connecting to `amqp_url` (a proxy, say), without
    /// waiting for it to be ready.
    pub async fn spawn(prefix: &TestPrefix, amqp_url: &str, toml: &str) -> RunningWorker {
        // The worker's delay tiers are the prefix's unless the test sets its
        // own (a top-level key: it goes before any table).
        let toml = if toml.contains("delay_tiers") {
            toml.to_owned()
        } else {
            format!("{}\n{toml}", prefix.tiers_toml())
        };
        let toml = toml.as_str();
        let config = alertpost_config::parse(toml, "test.toml", &|name| std::env::var(name).ok())
            .unwrap_or_else(|e| panic!("{e}"));
        let lanes = prefix.lanes();
        lanes.register_config(&config);
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("admin can listen");
        let admin_addr = admin.local_addr().expect("bound");
        let (tx, rx) = oneshot::channel::<()>();
        let (reload, configs) = mpsc::channel(1);
        let data = tempfile::tempdir().expect("a temporary directory");
        let store = alertpost_store::Store::open(data.path()).expect("a fresh store opens");
        let topology = prefix
            .topology
            .clone()
            .with_tiers(config.delay_tiers.clone())
            .expect("the config's tiers are valid");
        let backend =
            alertpost_broker::Rabbit::new(amqp_url, &format!("{}-worker", prefix.prefix), topology);
        let options = WorkerOptions {
            config,
            admin: Some(admin),
            reload: Some(configs),
            store: store.clone(),
        };
        let handle = tokio::spawn(alertpost_worker::run(backend, options, async move {
            let _ = rx.await;
        }));
        RunningWorker {
            stop: Some(tx),
            data,
            store,
            reload,
            lanes,
            handle,
            admin: admin_addr,
        }
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        self.wait_readyz(200, timeout).await;
    }

    /// Polls `/readyz` until it answers `status`.
    pub async fn wait_readyz(&self, status: u16, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = crate::bin::http_get(self.admin, "/readyz").await;
            if got.map(|(s, _)| s) == Some(status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz did not answer {status} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Hands the worker a new configuration, as SIGHUP does.
    pub async fn reload(&self, toml: &str) {
        let config = alertpost_config::parse(toml, "reload.toml", &|name| std::env::var(name).ok())
            .unwrap_or_else(|e| panic!("{e}"));
        self.lanes.register_config(&config);
        self.reload
            .send(config)
            .await
            .expect("the worker takes reloads");
    }

    /// Graceful stop: drain, then return the worker's result.
    pub async fn stop(mut self) -> Result<(), WorkerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.handle)
            .await
            .expect("the worker task does not panic")
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
