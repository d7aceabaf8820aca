//! Readiness, as the supervisor sees it and `/readyz` reports it.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::IntGauge;

/// Shared between the supervisor (writer) and the admin server (reader).
#[derive(Debug)]
pub struct Health {
    connected: AtomicBool,
    consuming: AtomicBool,
    /// `alertpost_broker_connected`, kept in step.
    gauge: IntGauge,
}

impl Health {
    pub fn new(gauge: IntGauge) -> Health {
        Health {
            connected: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
            gauge,
        }
    }

    pub fn set_connected(&self, yes: bool) {
        self.connected.store(yes, Ordering::Relaxed);
        self.gauge.set(i64::from(yes));
        if !yes {
            self.consuming.store(false, Ordering::Relaxed);
        }
    }

    pub fn set_consuming(&self, yes: bool) {
        self.consuming.store(yes, Ordering::Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }

    /// Ready: connected to the broker and consuming.
    pub fn ready(&self) -> bool {
        self.connected() && self.consuming()
    }
}
