//! MCP's streamable HTTP transport: `<mcp.path>/<connection>` served by rmcp's
//! `StreamableHttpService`, behind the gRPC bearer tokens (role `invoker` or `admin`). The
//! connection comes from the path and the caller from the token; both ride on the request's
//! extensions to the tool handler.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::Service;

pub use http::request::Parts;

use super::{McpTarget, McpTools};
use crate::api::auth::Caller;
use crate::api::tools::ToolApi;
use crate::auth::{AuthError, Role, TokenTable};
use crate::config::McpSettings;

/// Why MCP over HTTP could not start.
#[derive(Debug, thiserror::Error)]
pub enum McpHttpError {
    #[error(
        "refusing to serve MCP on the non-loopback address {0} without auth.tokens; configure tokens, or pass --insecure (server.allow_insecure)"
    )]
    Exposed(SocketAddr),
    #[error("MCP over HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// A running MCP HTTP endpoint.
#[derive(Debug)]
pub struct McpHttp {
    /// Where it listens.
    pub addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl McpHttp {
    /// Closes every MCP session and stops serving.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Serves every connection's tools on `listener` until [`McpHttp::shutdown`]. `insecure` lifts
/// the rule that a non-loopback address needs tokens.
pub fn serve_http(
    tools: ToolApi,
    settings: &McpSettings,
    tokens: Arc<TokenTable>,
    listener: TcpListener,
    insecure: bool,
) -> Result<McpHttp, McpHttpError> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && tokens.is_empty() && !insecure {
        return Err(McpHttpError::Exposed(addr));
    }
    let cancel = CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(cancel.child_token())
        .with_sse_keep_alive(Some(std::time::Duration::from_secs(15)));
    config = if settings.allowed_hosts.iter().any(|host| host == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(settings.allowed_hosts.clone())
    };
    let handler_tools = tools.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(McpTools::per_request(handler_tools.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let gate = Gate {
        prefix: format!("{}/", settings.path),
        tokens,
        tools,
    };
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let gate = gate.clone();
        let mut mcp = mcp.clone();
        async move {
            let request = match gate.admit(request) {
                Ok(request) => request,
                Err(response) => return Ok::<_, Infallible>(*response),
            };
            let response = match mcp.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(Body::new))
        }
    });
    let router = axum::Router::new().fallback_service(service);
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "MCP over HTTP stopped");
        }
    });
    tracing::info!(%addr, path = %settings.path, "serving agent tools over MCP streamable HTTP");
    Ok(McpHttp { addr, cancel, task })
}

/// Admits a request: the path names a known connection and the bearer token is good.
#[derive(Clone)]
struct Gate {
    /// `<mcp.path>/`.
    prefix: String,
    tokens: Arc<TokenTable>,
    tools: ToolApi,
}

impl Gate {
    fn admit(
        &self,
        mut request: http::Request<Body>,
    ) -> Result<http::Request<Body>, Box<Response>> {
        let connection = request
            .uri()
            .path()
            .strip_prefix(&self.prefix)
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_owned)
            .ok_or_else(|| {
                plain(
                    http::StatusCode::NOT_FOUND,
                    "not found: MCP endpoints are <mcp.path>/<connection>",
                )
            })?;
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = match self.tokens.identify(header, Role::Invoker) {
            Ok(name) => Caller::from_token(name),
            Err(error) => return Err(refused(&error)),
        };
        if self.tools.state.registry.get(&connection).is_none() {
            return Err(plain(
                http::StatusCode::NOT_FOUND,
                &format!("no connection named {connection:?}"),
            ));
        }
        request
            .extensions_mut()
            .insert(McpTarget { connection, caller });
        Ok(request)
    }
}

fn plain(status: http::StatusCode, text: &str) -> Box<Response> {
    let mut response = Response::new(Body::from(text.to_owned()));
    *response.status_mut() = status;
    Box::new(response)
}

/// 401 with a bearer challenge for a missing or unknown token, 403 for the wrong role.
fn refused(error: &AuthError) -> Box<Response> {
    let status = match error {
        AuthError::Forbidden { .. } => http::StatusCode::FORBIDDEN,
        AuthError::MissingToken | AuthError::UnknownToken => http::StatusCode::UNAUTHORIZED,
    };
    let mut response = plain(status, &error.to_string());
    if status == http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}
