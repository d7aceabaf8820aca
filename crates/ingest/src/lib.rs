//! alertpost's HTTP ingest: payloads in, confirmed events out.
//!
//! | route | does |
//! | --- | --- |
//! | `POST /v1/events` | normalized events: one object or an array |
//! | `POST /v1/ingest/<format>` | a source's own payload (`alertmanager`, `grafana`, `hertzbeat`, `grafana-oncall`, `aporia`), one event per alert |
//! | `GET /healthz` | the process is alive |
//! | `GET /readyz` | the broker reachable and taking publishes |
//! | `GET /metrics` | `alertpost_events_published_total{source}`, `alertpost_broker_connected`, process metrics |
//! | `GET /openapi.json` | this API as OpenAPI 3.1 ([`openapi`]) |
//!
//! Answers: `202` with the ids once the broker has stored every event
//! (RabbitMQ: confirmed; the embedded queue of `alertpost run`: on disk);
//! `400` with a JSON `error` for input that is not valid (nothing is
//! published then: the whole body is checked first); `401` without one of
//! the configured tokens (`[ingest] tokens`; Bearer, or Basic with the token
//! as password); `404` for an unknown format; `408` for a body not sent
//! within [`BODY_TIMEOUT`]; `413` for a body over [`MAX_BODY_BYTES`] or an
//! event over the event size cap; `503` beyond `max_concurrent` requests at
//! once, and while the broker is unreachable, blocks publishing (a
//! RabbitMQ memory or disk alarm) or does not confirm within
//! [`BROKER_WAIT`]: never a hang, never a `202` for what was not
//! confirmed; the answers name the broker. A client has [`HEADER_TIMEOUT`]
//! to send its headers; a stop waits at most [`SHUTDOWN_WAIT`] for requests
//! in progress.
//!
//! Layout, from the request in: `server` (the routes, serving), `state`
//! (what requests share), `routes`, `accept` (one request that brings
//! events), `answers` (the JSON answers), [`openapi`] (the document).

mod accept;
mod answers;
pub mod openapi;
mod routes;
mod server;
mod state;

use std::time::Duration;

pub use server::{Bounds, router, serve, serve_bounded};

/// The largest request body accepted: room for a big Alertmanager group.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The most a request waits for the broker (a connection, the confirms) before
/// it is answered 503: callers (Alertmanager, Grafana) retry, and a hung
/// request helps no one.
pub const BROKER_WAIT: Duration = Duration::from_secs(4);
/// A client's time to send its request line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client's time to send its whole body (4 MiB at a slow 500 KiB/s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for requests in progress (each is bounded by the
/// timeouts above and [`BROKER_WAIT`]); connections left are then closed.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);
