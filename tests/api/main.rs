//! Black-box tests: the real service on a random port, a fresh database per test, HTTP only.
//! Every test runs on SQLite and on PostgreSQL (`TEST_DATABASE_URL`); a missing PostgreSQL is
//! a failure, never a skip.

mod helpers;

mod access;
mod api;
mod browser;
mod chaos;
mod concurrency;
mod console;
mod crash;
mod dispatch_chaos;
mod dispatch_model;
mod egress;
mod guard;
mod lifecycle;
mod openapi;
mod operators;
mod outbound;
mod outbox;
mod platforms;
mod quarantine;
mod retention;
mod send;
mod shutdown;
mod signatures;
mod slow_clients;
mod startup;
mod status;
mod subscriber;
mod telemetry;
mod unavailable;
mod upgrade;
mod webhooks;
