//! Stripe's specifics, kept small: form encoding with brackets, request headers (auth, version,
//! account, idempotency), error bodies, retry hints and the gated parameters the pinned API
//! version leaves out, and the search query language filter clauses are pushed down to.
//! Everything else in the engine is generic.

pub mod error;
pub mod form;
pub mod gated;
pub mod headers;
pub mod search;
