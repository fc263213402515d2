//! The gRPC edge: the only user of generated types and of `tonic::Status`.

pub mod auth;
pub mod convert;
pub mod pb;
pub mod status;
