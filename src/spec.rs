//! Connector specs: the data model, loading and validation. No I/O beyond reading spec files.

pub mod model;
