//! Readiness, as the supervisor sees it and `/readyz` reports it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::IntGauge;

/// Shared between the supervisor (writer) and the admin server (reader).
#[derive(Debug)]
pub struct Health {
    connected: AtomicBool,
    consuming: AtomicBool,
    /// Why the session cannot publish now (blocked by an alarm, its
    /// publishing connection reopening); `None`: it can.
    not_publishing: Mutex<Option<String>>,
    /// `alertpost_broker_connected`, kept in step.
    gauge: IntGauge,
}

impl Health {
    pub(crate) fn new(gauge: IntGauge) -> Health {
        Health {
            connected: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
            not_publishing: Mutex::new(None),
            gauge,
        }
    }

    pub(crate) fn set_connected(&self, yes: bool) {
        self.connected.store(yes, Ordering::Relaxed);
        self.gauge.set(i64::from(yes));
        if !yes {
            self.consuming.store(false, Ordering::Relaxed);
            self.set_not_publishing(None);
        }
    }

    pub(crate) fn set_consuming(&self, yes: bool) {
        self.consuming.store(yes, Ordering::Relaxed);
    }

    pub(crate) fn set_not_publishing(&self, reason: Option<String>) {
        *self
            .not_publishing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = reason;
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }

    /// Why the worker cannot publish now, if it cannot.
    pub fn not_publishing(&self) -> Option<String> {
        self.not_publishing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ready: connected to the broker, consuming, and able to publish.
    pub fn ready(&self) -> bool {
        self.connected() && self.consuming() && self.not_publishing().is_none()
    }

    /// Why it is not ready, for `/readyz`; `None` when it is.
    pub fn reason(&self) -> Option<String> {
        if !self.connected() {
            Some("not connected to the broker".to_owned())
        } else if let Some(reason) = self.not_publishing() {
            Some(format!("{reason}; taking no new messages"))
        } else if !self.consuming() {
            Some("not consuming".to_owned())
        } else {
            None
        }
    }
}
