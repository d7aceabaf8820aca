//! alertpost's worker: consume, match, render, deliver, hand off, settle,
//! over any broker behind the seam (`alertpost_seam::Backend`).
//!
//! Layout, along a message's path:
//! - [`supervisor`]: opens a session with the backend, consumes the events
//!   and deliveries under the in-flight bound, reopens after a failure,
//!   drains on shutdown;
//! - `lanes`: one consumer per integration's lane, kept in step with the
//!   config;
//! - `pump`: takes messages from one stream and gives each a task;
//! - `dispatch`: one message (an event, or a delivery job) → its
//!   deliveries, the journal consulted first;
//! - `delivery`: one delivery: its turn (now, or to its lane; or in turn
//!   from its lane), the body, the attempt, the record, its step;
//! - `attempt`: one HTTP attempt: send, classify, log, report to the
//!   circuit;
//! - [`decide`]: what an attempt comes to (pure): delivered, retry at, dead;
//! - [`schedule`]: when a failed delivery is tried again (backoff);
//! - `handoff`: the steps published and confirmed, journaled, counted;
//!   then how the message is settled;
//! - `batching`: hand-offs to one lane from many messages, gathered into
//!   one broker message;
//! - [`circuit`]: the per-integration circuit breaker;
//! - [`operational`]: an integration's state (active, warning, error) and
//!   the `integration.status` events its changes raise;
//! - [`runtime`]: the configuration as the worker uses it (integrations
//!   with their permits and circuits) and what every task shares;
//! - [`admin`]: `/healthz`, `/readyz`, integrations, attempts and dead
//!   letters as JSON, test deliveries, and the dead queue (list, show,
//!   replay, purge) behind its token;
//! - `console`: the operators' pages on the admin address, over the same
//!   data and routes;
//! - [`status`]: where each integration stands (state, circuit, counts,
//!   last success and failure);
//! - `masking`: secrets out of what operators see;
//! - `origin`: requests a browser makes on another site's behalf, refused;
//! - [`trial`]: a test delivery, shown in full (`alertpost test` and the
//!   console's Test button);
//! - [`deadletters`]: the dead queue for operators, over any backend (the
//!   admin API and `alertpost dlq` share it);
//! - [`health`]: the readiness the supervisor reports and admin serves.
//!
//! The contract with the backend: a message is settled with an ack only
//! after each of its deliveries is delivered, or handed to its lane, a
//! wait or the dead queue with a confirm, and journaled. Anything else
//! requeues it or leaves it unsettled, and the backend hands it out again.

mod attempt;
pub mod circuit;
mod consume;
pub mod decide;
mod delivery;
mod dispatch;
mod handoff;
pub mod health;
mod journal;
mod lane_writer;
mod lanes;
mod link;
mod matching;
mod observe;
pub mod operational;
mod pump;
mod render;
pub mod runtime;
pub mod schedule;
mod stages;
mod step;
pub mod supervisor;
pub mod target;
mod turn;
pub mod view;

pub use supervisor::{Worker, WorkerError, WorkerOptions};
pub use view::{AttemptQuery, View};
