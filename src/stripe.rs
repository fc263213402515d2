//! Stripe's specifics, kept small: form encoding with brackets, request headers (auth, version,
//! account, idempotency), error bodies and retry hints, webhook signatures and the event shape.
//! Everything else in the engine, the event store and the subscriptions is generic.

pub mod error;
pub mod event;
pub mod form;
pub mod headers;
pub mod webhook;
