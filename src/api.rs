//! The gRPC edge: the only user of generated types and of `tonic::Status`.

pub mod auth;
pub mod client;
pub mod connection_convert;
pub mod connections;
pub mod convert;
pub mod deadline;
pub mod events;
pub mod export;
pub mod export_cli;
pub mod mcp;
pub mod names;
pub mod pb;
pub mod services;
pub mod socket;
pub mod spec_view;
pub mod status;
pub mod tools;
