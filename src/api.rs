//! The gRPC edge: the only user of generated types and of `tonic::Status`.

pub mod pb;
