//! The generic connector engine: executes the connector spec's entity operations and actions
//! against the upstream, one admitted transaction per upstream request.
//!
//! It knows nothing of gRPC (that is `api`) and nothing Stripe-specific beyond what `stripe` and
//! the spec tell it.

pub mod client;
pub mod conditions;
pub mod error;
pub mod paging;
pub mod request;
pub mod result;
pub mod retry;
pub mod schema;
pub use error::{EngineError, FieldViolation};
