//! End-to-end tests: the real RabbitMQ (`ALERTPOST_AMQP_URL`, else the local
//! default), real HTTP receivers on 127.0.0.1:0, a prefix per test.

mod alertmanager;
mod cli;
mod console;
mod durability;
mod embedded;
mod faults;
mod ingest;
mod integrations;
mod isolation;
mod observability;
mod openapi;
mod order;
mod pipeline;
mod run;
mod tokens;
