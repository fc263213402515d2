//! Settings of the MCP streamable HTTP endpoint, which serves each connection's agent tools.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// MCP's streamable HTTP transport: agent tools for MCP clients, behind the same bearer tokens
/// as gRPC (`auth.tokens`, role `invoker` or `admin`). The stdio transport needs no settings
/// (`connector-runtime mcp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpSettings {
    /// Address and port to serve MCP's streamable HTTP transport on (`IP:port`; port 0 picks a
    /// free one). Default: unset (MCP over HTTP is not served).
    pub listen: Option<SocketAddr>,
    /// Path prefix of the endpoints: connection `c`'s tools are served at `<path>/<c>`.
    /// Default: `/mcp`.
    pub path: String,
    /// Names (`host` or `host:port`) accepted in the `Host` header, against DNS rebinding; `*`
    /// accepts any. Default: `localhost`, `127.0.0.1`, `::1`.
    pub allowed_hosts: Vec<String>,
}

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            listen: None,
            path: default_mcp_path(),
            allowed_hosts: default_allowed_hosts(),
        }
    }
}

/// `/mcp`.
pub fn default_mcp_path() -> String {
    "/mcp".to_owned()
}

/// The loopback names.
pub fn default_allowed_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"]
        .map(str::to_owned)
        .to_vec()
}

impl McpSettings {
    /// What is wrong, as (key, message) pairs.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let path_ok = self.path.starts_with('/')
            && self.path.len() > 1
            && !self.path.ends_with('/')
            && self
                .path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
        if !path_ok {
            problems.push((
                "mcp.path".to_owned(),
                "must start with `/`, not end with `/`, and hold only letters, digits, `/`, `-`, `_` and `.`"
                    .to_owned(),
            ));
        }
        if self.allowed_hosts.iter().any(|host| host.trim().is_empty()) {
            problems.push((
                "mcp.allowed_hosts".to_owned(),
                "host names must not be empty".to_owned(),
            ));
        }
        problems
    }
}
