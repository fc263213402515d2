//! Agent tools over the Model Context Protocol, on `rmcp` (the official Rust SDK): the same
//! tools, policy and execution path as the gRPC `ToolService` ([`ToolApi`]), served over stdio
//! (`connector-runtime mcp`, one connection) and over MCP's streamable HTTP transport
//! (`mcp.listen`; connection `c` at `<mcp.path>/<c>`, behind the gRPC bearer tokens).
//!
//! A failed tool call is a tool error result (`isError`), never a protocol error, so the agent
//! sees why: its text is `<REASON>: <message>` (Stripe's message for upstream errors) and its
//! structured content carries the gRPC code, the reason and the ErrorInfo metadata.

mod http;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use tonic::Status;

pub use self::http::{McpHttp, McpHttpError, serve_http};
use super::auth::Caller;
use super::tools::ToolApi;
use crate::tools::ToolDefinition;

/// What the server tells MCP clients about itself.
const INSTRUCTIONS: &str = "Tools for one Stripe connection of connector-runtime: a tool per entity operation (list_*, get_*, create_*, update_*, delete_*) and per action (confirm_payment_intent, ...). List tools take a filter clause in `conditions` and page with page_size/page_token. Creates and actions require a unique request_id; repeating it replays the first result. The connection's tool policy decides which tools exist here; a refused call names the setting that would allow it.";

/// Which connection a session serves and who is calling: fixed for stdio, taken from the HTTP
/// request (path and bearer token) for streamable HTTP.
#[derive(Debug, Clone)]
pub struct McpTarget {
    pub connection: String,
    pub caller: Caller,
}

/// The MCP server handler of one session.
#[derive(Debug, Clone)]
pub struct McpTools {
    tools: ToolApi,
    /// Set for stdio; over HTTP each request's target comes from its extensions.
    fixed: Option<McpTarget>,
}

impl McpTools {
    /// A handler serving `target` (stdio).
    pub fn fixed(tools: ToolApi, target: McpTarget) -> Self {
        Self {
            tools,
            fixed: Some(target),
        }
    }

    /// A handler serving the target each HTTP request carries.
    pub fn per_request(tools: ToolApi) -> Self {
        Self { tools, fixed: None }
    }

    fn target(&self, context: &RequestContext<RoleServer>) -> Result<McpTarget, ErrorData> {
        if let Some(target) = &self.fixed {
            return Ok(target.clone());
        }
        context
            .extensions
            .get::<http::Parts>()
            .and_then(|parts| parts.extensions.get::<McpTarget>())
            .cloned()
            .ok_or_else(|| ErrorData::internal_error("the request names no connection", None))
    }
}

/// A tool as MCP describes it.
pub fn mcp_tool(tool: &ToolDefinition) -> Tool {
    let annotations = ToolAnnotations::with_title(tool.title.clone())
        .read_only(tool.hints.read_only)
        .destructive(tool.hints.destructive)
        .idempotent(tool.hints.idempotent)
        .open_world(tool.hints.open_world);
    Tool::new(
        tool.name.clone(),
        tool.description.clone(),
        tool.input_schema.clone(),
    )
    .with_title(tool.title.clone())
    .with_raw_output_schema(tool.output_schema.clone())
    .with_annotations(annotations)
}

/// A failed call as a tool error: `<REASON>: <message>`, with the details as structured content.
pub fn tool_error(error: &Status) -> CallToolResult {
    let info = tonic_types::StatusExt::get_details_error_info(error);
    let reason = info
        .as_ref()
        .map_or_else(|| format!("{:?}", error.code()), |i| i.reason.clone());
    let metadata: Map<String, Value> = info
        .map(|i| {
            let mut pairs: Vec<(String, String)> = i.metadata.into_iter().collect();
            pairs.sort();
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "{reason}: {}",
        error.message()
    ))]);
    result.structured_content = Some(json!({
        "error": {
            "code": format!("{:?}", error.code()),
            "reason": reason,
            "message": error.message(),
            "metadata": metadata,
        }
    }));
    result
}

impl ServerHandler for McpTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "connector-runtime",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let target = self.target(&context)?;
        let visible = self
            .tools
            .visible(&target.connection)
            .map_err(|status| ErrorData::invalid_params(status.message().to_owned(), None))?;
        Ok(ListToolsResult::with_all_items(
            visible.into_iter().map(mcp_tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let target = self.target(&context)?;
        let arguments = request.arguments.unwrap_or_default();
        let outcome = self
            .tools
            .execute(
                &target.caller,
                &target.connection,
                &request.name,
                arguments,
                None,
            )
            .await;
        let result = match outcome {
            Ok(object) => {
                let text = serde_json::to_string(&object).unwrap_or_default();
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(Value::Object(object));
                result
            }
            Err(status) => tool_error(&status),
        };
        Ok(result.into())
    }
}

/// Why MCP over stdio stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("MCP over stdio: {0}")]
pub struct McpStdioError(String);

/// Serves `target`'s tools over stdin and stdout until the client closes the stream.
pub async fn serve_stdio(tools: ToolApi, target: McpTarget) -> Result<(), McpStdioError> {
    let service = McpTools::fixed(tools, target)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpStdioError(e.to_string()))?;
    service
        .waiting()
        .await
        .map_err(|e| McpStdioError(e.to_string()))?;
    Ok(())
}
