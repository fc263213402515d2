//! Agent tools: every entity operation and every action of a connector spec as a tool with a
//! name (`list_customers`, `confirm_payment_intent`), Stripe's description, an input and an output
//! JSON schema, and MCP's behaviour hints; and the per-connection policy that says which tools
//! agents may see and call. Pure: built once from the spec, no I/O. The transports (gRPC
//! `ToolService`, MCP) live in `api::tools` and `api::mcp`, and execute tools through the same
//! services as every other call.

mod catalog;
mod io_schemas;
mod policy;

pub use catalog::{ToolCatalog, ToolDefinition, ToolHints, ToolOperation};
pub use io_schemas::{CONDITIONS, PAGE_SIZE, PAGE_TOKEN, REQUEST_ID};
pub use policy::{PolicyRefusal, ToolPolicyCheck, pattern_matches, valid_pattern};
