//! alertpost's delivery core: consume, match, render, deliver, hand off,
//! settle, over any broker behind the seam (`alertpost_seam::Backend`).
//! Operators read it through its [`View`] (`alertpost-admin`); it never
//! reads them.
//!
//! Layout, along a message's path:
//! - `supervisor`: the [`Worker`]: sessions one after another, the store's
//!   writer, reloads; `consume`: one session's worth of consuming, and its
//!   drain;
//! - `lanes`: one consumer per integration's lane; `holdings`: one per
//!   shard this worker holds, in step with the fleet; `pump`: a stream → a
//!   task per message, under the in-flight bound;
//! - `dispatch`: one message (an event, or delivery jobs) → its deliveries
//!   → their hand-offs → settled; `shard`: which messages go to their
//!   alert's shard instead (pure); `matching`: which integrations an event
//!   goes to;
//! - `stages`: one delivery's stages, in order: `order` (per-key order:
//!   taken in, claimed before the attempt), `turn` (permit, rate-limit
//!   token), `render` (the body), `gate` (the circuit), `attempt` (send,
//!   classify, mask), `decide` (what it comes to, pure, with `schedule`,
//!   the backoff), each told to `observe` (the record, metrics, the
//!   circuit, states, status, dead letters kept);
//! - `delivery`: one delivery as it travels, and the job or dead letter it
//!   becomes; `step`: what it comes to;
//! - `handoff`: a step published, confirmed and journaled; `link`: what a
//!   session's hand-offs share; `lane_writer`: lane hand-offs gathered into
//!   one broker message; `journal`: the journal rule;
//! - `target`: an integration as delivered to (permits, bucket, circuit,
//!   series, last success and failure); `runtime`: the config in force and
//!   what every task shares; `circuit`: the breaker; [`operational`]:
//!   integration states and the events they raise; [`health`]: readiness;
//!   [`view`]: what operators read.
//!
//! The contract with the backend: a message is settled with an ack only
//! after each of its deliveries is delivered, or handed to its lane, a
//! wait, its shard or the dead queue with a confirm, and journaled. Anything else
//! requeues it or leaves it unsettled, and the backend hands it out again.

mod attempt;
mod circuit;
mod consume;
mod decide;
mod delivery;
mod dispatch;
mod gate;
mod handoff;
pub mod health;
mod holdings;
mod journal;
mod lane_writer;
mod lanes;
mod link;
mod matching;
mod observe;
pub mod operational;
mod order;
mod pump;
mod render;
pub mod runtime;
mod schedule;
mod shard;
mod stages;
mod step;
mod supervisor;
mod target;
mod turn;
pub mod view;

pub use supervisor::{Worker, WorkerError, WorkerOptions};
pub use view::{AttemptQuery, IntegrationState, View};
