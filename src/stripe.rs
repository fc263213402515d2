//! Stripe's specifics, kept small: form encoding with brackets, request headers (auth, version,
//! account, idempotency), error bodies, retry hints and the gated parameters the pinned API
//! version leaves out. Everything else in the engine is generic.

pub mod error;
pub mod form;
pub mod gated;
pub mod headers;
