//! The connection as the runtime sees it: plain data, no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

// A connection's node counts default to the node pool's own defaults: one definition each.
use crate::throttle::{default_max_nodes, default_min_nodes};

/// Default verbosity (1–5).
pub const fn default_verbosity() -> u8 {
    1
}

/// A reference to a secret: `<secret_dir>/<secret>/<version>`, or `env:VAR` for an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub secret: String,
    /// A version number or `latest`.
    #[serde(default = "default_version")]
    pub version: String,
}

fn default_version() -> String {
    "latest".to_owned()
}

/// Names the reference (never a value): ``secret `stripe-key` version `3` ``.
impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret `{}` version `{}`", self.secret, self.version)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProxyAuthScheme {
    Basic,
    Digest,
    #[default]
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProxySslType {
    #[default]
    Auto,
    Always,
    Never,
    Tunnel,
}

/// Proxy settings of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub auth_scheme: ProxyAuthScheme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub ssl_type: ProxySslType,
    /// Proxy host name or IP address (`server_host` in the proto; accepted as an alias).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "server_host"
    )]
    pub host: Option<String>,
    /// Proxy port (`server_port` in the proto; accepted as an alias).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "server_port"
    )]
    pub port: Option<u16>,
}

/// Node pool bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    #[serde(default = "default_min_nodes")]
    pub min_node_count: u32,
    #[serde(default = "default_max_nodes")]
    pub max_node_count: u32,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            min_node_count: default_min_nodes(),
            max_node_count: default_max_nodes(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    #[default]
    Error,
    Warning,
    Info,
    Debug,
}

/// Which agent tools (`ToolService`, MCP) a connection exposes. Tool names are snake_case
/// (`list_customers`, `create_customer`, `confirm_payment_intent`); patterns match whole names,
/// `*` standing for any run of characters (`create_*`, `*_invoice`, `*`).
///
/// The default exposes the read-only tools (List and Get) only. A tool that changes data needs
/// a pattern in `allow`; a destructive or money-moving one (deletes, and actions such as
/// confirm, capture, refund, pay, void, finalize, cancel) needs a pattern in
/// `allow_destructive` instead, and with a live-mode key also `allow_live_destructive`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPolicy {
    /// Patterns of tools that change data (creates, updates, reversible actions) agents may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Patterns of destructive or money-moving tools agents may use; `allow` does not cover them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_destructive: Vec<String>,
    /// With a live-mode key (`sk_live_…`, `rk_live_…`), destructive tools are refused unless this
    /// is also true: the second, explicit setting for real money.
    #[serde(default)]
    pub allow_live_destructive: bool,
    /// Patterns of tools agents may never see or call, whatever the allow lists say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Where a connection's definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    ConfigFile,
    Api,
    Embedded,
}

/// One connection's settings. `id` is the short name (`stripe-eu`), the resource name is `connections/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_connector")]
    pub connector: String,
    #[serde(default = "default_connector_version")]
    pub connector_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The Stripe key. `None` only for the embedded sandbox connection, which uses the sandbox's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretRef>,
    #[serde(default = "default_verbosity")]
    pub verbosity: u8,
    #[serde(default)]
    pub log_level: LogLevel,
    #[serde(default)]
    pub proxy: ProxySettings,
    /// Node pool bounds (`node_config` in the proto; accepted as an alias).
    #[serde(default, alias = "node_config")]
    pub nodes: NodeSettings,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The upstream's base URL; by default the connector spec's `default_base_url`.
    #[serde(default = "default_base_url")]
    pub api_base_url: String,
    /// Signing secrets (`whsec_…`) of the Stripe webhook endpoint that posts to this connection's
    /// `/webhooks/{id}`, as secret references. A webhook verifies when any of them matches, so
    /// during a rotation list the old and the new one. Empty: webhooks for it are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_signing_secrets: Vec<SecretRef>,
    /// Which agent tools the connection exposes (default: read-only tools only).
    #[serde(default)]
    pub tool_policy: ToolPolicy,
}

fn default_connector() -> String {
    "stripe".to_owned()
}

fn default_connector_version() -> String {
    "1".to_owned()
}

/// The `api_base_url` of a connection that names none: the built-in connector spec's
/// `default_base_url` (`https://api.stripe.com`), so the spec is its one definition.
pub fn default_base_url() -> String {
    crate::spec::stripe()
        .map(|spec| spec.connector.default_base_url.clone())
        .unwrap_or_default()
}

impl ConnectionSpec {
    /// A connection with every default and the given id.
    pub fn with_id(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            description: String::new(),
            connector: default_connector(),
            connector_version: default_connector_version(),
            account_id: None,
            api_key: None,
            verbosity: default_verbosity(),
            log_level: LogLevel::default(),
            proxy: ProxySettings::default(),
            nodes: NodeSettings::default(),
            labels: BTreeMap::new(),
            api_base_url: default_base_url(),
            webhook_signing_secrets: Vec::new(),
            tool_policy: ToolPolicy::default(),
        }
    }

    /// `connections/{id}`.
    pub fn resource_name(&self) -> String {
        format!("connections/{}", self.id)
    }
}

/// A connection as the runtime keeps it: its settings plus where they came from and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredConnection {
    pub spec: ConnectionSpec,
    pub origin: Origin,
    /// When the connection was created (for config-file connections never changed through the
    /// API: when the runtime loaded it).
    #[serde(with = "humantime_serde")]
    pub create_time: SystemTime,
    /// When the connection last changed.
    #[serde(with = "humantime_serde")]
    pub update_time: SystemTime,
}

impl StoredConnection {
    /// The short id, e.g. `stripe-eu`.
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}
