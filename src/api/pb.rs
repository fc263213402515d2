//! Generated protobuf and gRPC code, fenced in one module.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("connectors.v1");

pub use super::tools::ListToolsResponse;

/// Encoded file descriptor set of the public API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("connectors_descriptor");
