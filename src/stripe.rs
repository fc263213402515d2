//! Stripe's specifics, kept small: form encoding with brackets, request headers (auth, version,
//! account, idempotency), error bodies and retry hints. Everything else in the engine is generic.

pub mod error;
pub mod form;
pub mod headers;
pub mod verbs;
