//! connector-runtime: a Stripe integration-connector runtime with a gRPC interface modelled on
//! Google Integration Connectors.
//!
//! Dependencies point one way: `api → engine → {upstream, spec, throttle, stripe}`; nothing imports `api` or `app`.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod connections;
pub mod dialects;
pub mod engine;
pub mod events;
pub mod fleet;
pub mod registry;
pub mod sandbox;
pub mod secrets;
pub mod spec;
pub mod stripe;
pub mod telemetry;
pub mod throttle;
pub mod tools;
pub mod upstream;
pub mod violation;
