//! Connections: their settings, validation, persistence and the live registry.

pub mod model;
pub mod store;
pub mod validate;
