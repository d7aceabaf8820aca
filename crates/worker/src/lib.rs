//! alertpost's worker: consume, match, render, deliver, hand off, ack.
//!
//! Layout, along a message's path:
//! - [`supervisor`]: connects, declares, consumes under a bound of
//!   in-flight messages, reconnects after a failure, drains on shutdown;
//! - [`dispatch`]: one message (an event, or a delivery job back from a
//!   delay tier) → its deliveries, run concurrently, each rendered,
//!   attempted, recorded, and given its next step;
//! - `handoff`: the steps that are not done go to a delay tier or the dead
//!   queue, confirmed; then the ack;
//! - [`schedule`]: when a failed delivery is tried again (backoff);
//! - [`circuit`]: the per-integration circuit breaker;
//! - [`delivery`]: one attempt of one delivery: request, send, classify, log;
//! - [`runtime`]: the configuration as the worker uses it (integrations
//!   with their concurrency permits);
//! - [`admin`]: `/healthz`, `/readyz`, attempts and dead letters as JSON;
//! - [`health`]: the readiness the supervisor reports and admin serves.
//!
//! The contract with the broker (see `alertpost_broker::seam`): a message is
//! acked only after each of its deliveries is delivered, or handed to a
//! delay queue or the dead queue with a confirm. Anything else leaves it
//! unacked, and RabbitMQ hands it out again.

pub mod admin;
pub mod circuit;
pub mod delivery;
pub mod dispatch;
mod handoff;
pub mod health;
pub mod runtime;
pub mod schedule;
pub mod supervisor;

pub use supervisor::{WorkerError, WorkerOptions, run};
