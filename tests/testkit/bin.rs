//! The `alertpost` binary, a worker run as a process of it, and a tiny
//! HTTP GET for admin endpoints.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestPrefix;

/// `target/<profile>/alertpost`, next to the test executable's directory.
/// `make test` builds it first; run `cargo build -p alertpost` otherwise.
pub fn alertpost_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its path");
    // target/<profile>/deps/<test> → target/<profile>/alertpost
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let bin = dir.join("alertpost");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p alertpost`, or `make test`)",
        bin.display()
    );
    bin
}

/// `alertpost` with the test prefix's broker settings in its environment.
pub fn alertpost(prefix: &TestPrefix) -> Command {
    let mut cmd = Command::new(alertpost_path());
    cmd.env("ALERTPOST_AMQP_URL", &prefix.url)
        .env("ALERTPOST_PREFIX", &prefix.prefix)
        .env_remove("ALERTPOST_CONFIG")
        .env("RUST_LOG", "info");
    cmd
}

/// `alertpost worker` as a process, on `config` and the store `data`,
/// with an admin address of its own; killed when dropped, so a test that
/// fails leaves none behind.
pub struct WorkerProcess {
    child: Child,
    pub admin: SocketAddr,
}

impl WorkerProcess {
    pub fn start(prefix: &TestPrefix, config: &Path, data: &Path) -> WorkerProcess {
        let admin = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let child = alertpost(prefix)
            .arg("worker")
            .arg("--config")
            .arg(config)
            .arg("--admin-addr")
            .arg(admin.to_string())
            .arg("--data-dir")
            .arg(data)
            .stderr(Stdio::null())
            .spawn()
            .expect("alertpost starts");
        WorkerProcess { child, admin }
    }

    /// SIGKILL: no drain, no acks.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a graceful stop.
    pub fn stop(mut self) {
        self.signal("-TERM");
        let _ = self.child.wait();
    }

    /// Sends `sig` (`-STOP`, `-CONT`, `-TERM`...).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // SIGKILL ends a frozen process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on 127.0.0.1; `(status, body)`, or `None` if nothing answers.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
