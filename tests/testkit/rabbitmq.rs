//! The local RabbitMQ node, driven through `rabbitmqctl`: alarms, a stopped
//! application, connections closed under a client. Each fault is a guard
//! that puts the broker back when dropped, also when the test panics.
//!
//! The alarm and the stopped app change the broker for everyone: the tests
//! that use them live in the chaos suite (`tests/chaos`), which runs one
//! test at a time and never beside the other suites. Closing connections
//! by name touches only the test's own. All need `rabbitmqctl` (root, or
//! `sudo -n`).

use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `rabbitmqctl` (bounded: a node that does not answer fails the
/// call, not the suite's clock); its stdout, or why it failed.
pub fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    // rabbitmqctl runs as root or rabbitmq (Debian's wrapper): sudo else.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = if root {
        Command::new("timeout")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "timeout"]);
        sudo
    };
    let out = cmd
        .arg("60")
        .arg("rabbitmqctl")
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .map_err(|e| format!("rabbitmqctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "rabbitmqctl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Waits until `check` holds, polling; panics after `timeout` naming `what`.
fn until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alarms() -> String {
    rabbitmqctl(&["eval", "rabbit_alarm:get_alarms()."]).unwrap_or_default()
}

/// A memory alarm: every connection that publishes is blocked until the
/// guard is dropped.
pub struct MemoryAlarm {
    previous: String,
}

impl MemoryAlarm {
    pub fn raise() -> MemoryAlarm {
        let previous = rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
            .ok()
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        // A fraction (`0.4`), or `{absolute,Bytes}`; else the packaged default.
        let previous = if previous.parse::<f64>().is_ok() {
            previous
        } else if let Some(bytes) = previous
            .strip_prefix("{absolute,")
            .and_then(|v| v.strip_suffix('}'))
        {
            format!("absolute {bytes}")
        } else {
            "0.4".to_owned()
        };
        // The guard exists before the alarm: a failure from here on restores.
        let guard = MemoryAlarm { previous };
        rabbitmqctl(&["set_vm_memory_high_watermark", "0.000001"]).expect("the alarm is raised");
        until("the memory alarm", Duration::from_secs(30), || {
            alarms().contains("memory")
        });
        guard
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let mut args = vec!["set_vm_memory_high_watermark"];
        args.extend(self.previous.split(' '));
        if let Err(e) = rabbitmqctl(&args) {
            eprintln!(
                "RESTORE FAILED, run `rabbitmqctl set_vm_memory_high_watermark {}`: {e}",
                self.previous
            );
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while alarms().contains("memory") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// RabbitMQ's application stopped (the node stays up): every connection
/// closes and none is accepted until the guard is dropped.
pub struct AppStopped(());

impl AppStopped {
    pub fn stop() -> AppStopped {
        let guard = AppStopped(());
        rabbitmqctl(&["stop_app"]).expect("the application stops");
        guard
    }
}

impl Drop for AppStopped {
    fn drop(&mut self) {
        if let Err(e) = start_app() {
            eprintln!("RESTORE FAILED, run `rabbitmqctl start_app`: {e}");
        }
    }
}

fn start_app() -> Result<(), String> {
    rabbitmqctl(&["start_app"])?;
    rabbitmqctl(&["await_startup"])?;
    Ok(())
}

/// Closes every client connection whose name contains `name`, as an
/// operator (or a network fault) would; how many it closed.
pub fn close_connections(name: &str) -> usize {
    // The name a client gives its connection is in its client properties.
    let listed = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ])
    .unwrap_or_else(|e| panic!("cannot list connections: {e}"));
    let mut closed = 0;
    for line in listed.lines() {
        let mut parts = line.splitn(2, '\t');
        let (Some(pid), Some(conn)) = (parts.next(), parts.next()) else {
            continue;
        };
        if conn.contains(name)
            && rabbitmqctl(&["close_connection", pid.trim(), "closed by a test"]).is_ok()
        {
            closed += 1;
        }
    }
    closed
}
