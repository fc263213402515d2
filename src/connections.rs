//! Connections: their settings, validation, persistence and the live registry.

pub mod model;
