//! The sandbox: a stateful, offline Stripe test-mode backend served over real HTTP on loopback.
//!
//! It serves every entity and action of a connector spec generically (create, retrieve, update,
//! delete, list, search, `expand[]`, idempotency keys, Stripe's errors) and models the flows that
//! matter (PaymentIntents with Stripe's test cards, PaymentMethods, Invoices, Quotes, Events). The
//! runtime talks to it exactly as it talks to Stripe; only the base URL differs. It owns its HTTP
//! server and in-memory state and must not depend on the engine or the gRPC API.

pub mod config;
mod error;
mod form;
mod schema;
mod search;

pub use config::{FaultConfig, FaultPhase, SandboxConfig};
