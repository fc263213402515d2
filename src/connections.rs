//! Connections: their settings ([`model`]), the rules they must satisfy ([`validate`]), and the
//! live set persisted across restarts ([`store`]), which other modules read (and subscribe to)
//! to serve calls.
//!
//! No gRPC types here: the API edge converts to and from [`model::ConnectionSpec`].

pub mod model;
pub mod store;
pub mod validate;
