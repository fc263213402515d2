//! Runtime settings: one configuration file (TOML or YAML, by extension) plus environment
//! overrides, read once at start-up into [`Settings`], the single source of truth.
//!
//! The `///` docs of the structs below are the user documentation of each key; every default is
//! a `default_*` function. Environment variables override the file: the prefix
//! `CONNECTOR_RUNTIME__`, then the key path with `__` between levels, in any case
//! (`CONNECTOR_RUNTIME__SERVER__LISTEN=0.0.0.0:50051`, `CONNECTOR_RUNTIME__NODES__STRIPE_BUDGET__TEST=20`).
//! Lists (`auth.tokens`, `connections`) come from the file only.
//!
//! [`load`] and [`check`] run the same rules: `load` succeeds exactly when `check` finds nothing
//! (apart from the exposure rule, which the `--insecure` flag can lift; see
//! [`Settings::exposure_problem`]). This module reads files (the configuration, TLS and CA files
//! to see that they exist, secrets to see that they resolve) and never starts anything.

mod check;
mod mcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::check::{Problem, check, check_with_env};
pub use self::mcp::McpSettings;
use crate::auth::Role;
use crate::connections::model::{ConnectionSpec, NodeSettings, SecretRef};
use crate::secrets::SecretResolver;
use crate::throttle::{
    default_live_mode_rate, default_max_queue, default_max_wait, default_node_burst,
    default_node_rate, default_scale_tick, default_stabilization_window,
    default_target_utilization, default_test_mode_rate,
};

/// Prefix of environment overrides (followed by [`ENV_SEPARATOR`]).
pub const ENV_PREFIX: &str = "CONNECTOR_RUNTIME";
/// Separator between the prefix and the key path, and between levels of the key path.
pub const ENV_SEPARATOR: &str = "__";

/// Why the settings could not be loaded: every problem found, each on its own line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration:\n{}", list(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every problem found.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
        }
    }
}

/// The process environment; variables whose name or value is not UTF-8 are left out (they can
/// be neither overrides nor `env:` secrets), where `std::env::vars` would panic.
pub(crate) fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads the settings from `path` (or only defaults and the environment when `None`) and the
/// process environment, and checks them.
pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
    load_with_env(path, process_env())
}

/// [`load`] with an explicit environment (for tests and embedding). Also the environment that
/// `env:` secrets resolve from.
pub fn load_with_env(
    path: Option<&Path>,
    env: HashMap<String, String>,
) -> Result<Settings, ConfigError> {
    let (settings, mut problems) = check::analyse(path, env);
    problems.retain(|p| !p.is_exposure());
    match settings {
        Some(settings) if problems.is_empty() => Ok(settings),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

/// Everything the runtime reads at start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The gRPC server.
    pub server: ServerSettings,
    /// Callers' bearer tokens.
    pub auth: AuthSettings,
    /// Where secret references resolve.
    pub secrets: SecretsSettings,
    /// Directory for state that must survive a restart: connections created, changed or deleted
    /// through the API (`<data_dir>/connections/<id>.json`). Created when missing.
    /// Default: `./data`.
    pub data_dir: PathBuf,
    /// Directory to load the connector spec from instead of the copy built into the binary.
    /// Default: unset (the embedded spec).
    pub spec_dir: Option<PathBuf>,
    /// The built-in Stripe test-mode sandbox.
    pub sandbox: SandboxSettings,
    /// Runtime-wide node pool settings; each connection sets its own node counts.
    pub nodes: NodesSettings,
    /// The HTTP client that calls Stripe.
    pub upstream: UpstreamSettings,
    /// The runtime's own log output.
    pub log: LogSettings,
    /// The metrics port: Prometheus `/metrics` and the live `/status` page.
    pub metrics: crate::telemetry::MetricsSettings,
    /// OpenTelemetry export of traces and metrics (OTLP).
    pub telemetry: crate::telemetry::TelemetrySettings,
    /// Stripe events: the webhook listener, the event store, catch-up and delivery.
    pub events: crate::events::EventsSettings,
    /// Agent tools over MCP's streamable HTTP transport.
    pub mcp: McpSettings,
    /// Connections defined in the file. Connections created or changed through the API are
    /// persisted in `data_dir` and take precedence over these (see `docs/configuration.md`).
    pub connections: Vec<ConnectionSpec>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            auth: AuthSettings::default(),
            secrets: SecretsSettings::default(),
            data_dir: default_data_dir(),
            spec_dir: None,
            sandbox: SandboxSettings::default(),
            nodes: NodesSettings::default(),
            upstream: UpstreamSettings::default(),
            log: LogSettings::default(),
            metrics: crate::telemetry::MetricsSettings::default(),
            telemetry: crate::telemetry::TelemetrySettings::default(),
            events: crate::events::EventsSettings::default(),
            mcp: McpSettings::default(),
            connections: Vec::new(),
        }
    }
}

/// `./data`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

impl Settings {
    /// A resolver over `secrets.dir`, with `env:` secrets from the process environment.
    pub fn secret_resolver(&self) -> SecretResolver {
        SecretResolver::new(self.secrets.dir.clone())
    }

    /// The refusal to serve without authentication on a non-loopback address: `Some` when
    /// `server.listen` is not a loopback address, `auth.tokens` is empty, and neither
    /// `server.allow_insecure` nor the `--insecure` flag (`cli_insecure`) allows it.
    pub fn exposure_problem(&self, cli_insecure: bool) -> Option<Problem> {
        let open = !self.server.listen.ip().is_loopback() && self.auth.tokens.is_empty();
        (open && !self.server.allow_insecure && !cli_insecure)
            .then(|| Problem::exposure(self.server.listen))
    }
}

/// The gRPC server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port to serve gRPC on (`IP:port`). Default: `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// Serve on a non-loopback address without bearer tokens. Without this (or the `--insecure`
    /// flag) the runtime refuses to start in that case. Default: `false`.
    pub allow_insecure: bool,
    /// TLS for the gRPC server: both files or neither. Default: plain text.
    pub tls: TlsSettings,
    /// How long in-flight calls may run after a shutdown signal before they are cut off
    /// (humantime: `30s`, `2m`). Default: `30s`.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Largest gRPC message accepted or sent, in bytes. Default: 10 MiB (Google's payload limit).
    pub max_message_bytes: usize,
    /// Threads that run the service's tasks (`serve` and `mcp`); `0` means one per CPU the
    /// process may use. Default: `1`. The work is I/O: one thread serves thousands of calls a
    /// second, far above what node pools admit, and keeps a call's hand-offs (gRPC in, request
    /// upstream, response out) on one core instead of waking threads on others. Raise it for
    /// many large exports at once.
    pub worker_threads: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allow_insecure: false,
            tls: TlsSettings::default(),
            drain_timeout: default_drain_timeout(),
            max_message_bytes: default_max_message_bytes(),
            worker_threads: default_worker_threads(),
        }
    }
}

/// One thread.
pub const fn default_worker_threads() -> usize {
    1
}

/// Most `server.worker_threads` accepted.
pub const MAX_WORKER_THREADS: usize = 256;

/// `127.0.0.1:50051`.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}

/// 30 seconds.
pub const fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

/// 10 MiB.
pub const fn default_max_message_bytes() -> usize {
    10 * 1024 * 1024
}

/// TLS certificate and key of the gRPC server, PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain (PEM). Default: unset.
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM). Default: unset.
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    /// The certificate and key files when both are set.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}

/// Callers' bearer tokens. With none, every call is allowed (only sensible on loopback).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Tokens callers send as `authorization: Bearer <token>`. `admin` may do everything,
    /// including what `invoker` may; `invoker` may read connections and use entities and
    /// actions. Default: none.
    pub tokens: Vec<TokenSettings>,
}

/// One bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Name shown in logs and errors (never the token).
    pub name: String,
    /// `admin` or `invoker`.
    pub role: Role,
    /// The token, as a secret reference; at least 16 characters.
    pub token: SecretRef,
}

/// Where secret references resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsSettings {
    /// Directory laid out like a secret manager: `<dir>/<secret>/<version>`, one file per
    /// version, `latest` meaning the highest version number. Secrets named `env:VAR` come from the
    /// environment instead. Default: unset (only `env:` secrets).
    pub dir: Option<PathBuf>,
}

/// The built-in Stripe test-mode sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// `auto`: start it when no connection has a Stripe key (so a fresh install works offline);
    /// `always`; `never`. Default: `auto`.
    pub enabled: SandboxMode,
    /// Address of the sandbox's HTTP API; port 0 picks a free port. Default: `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Requests per second per API key before the sandbox answers 429 like Stripe; 0 turns the
    /// limit off. Default: 25 (Stripe's test-mode limit).
    pub rate_limit: u32,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            enabled: SandboxMode::default(),
            listen: default_sandbox_listen(),
            rate_limit: default_sandbox_rate_limit(),
        }
    }
}

/// `127.0.0.1:0`.
pub fn default_sandbox_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// 25 requests/s.
pub const fn default_sandbox_rate_limit() -> u32 {
    25
}

/// When the sandbox runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// When no connection has a Stripe key.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl SandboxMode {
    /// Whether to start the sandbox, given whether any connection has a Stripe key.
    pub fn should_start(self, any_connection_has_key: bool) -> bool {
        match self {
            Self::Auto => !any_connection_has_key,
            Self::Always => true,
            Self::Never => false,
        }
    }
}

/// Runtime-wide node pool settings. Each connection has its own pool of nodes, sized between its
/// `node_config.min_node_count` and `max_node_count`; these settings say what a node is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodesSettings {
    /// Transactions per second one node admits. Default: 6 (Google's figure for Stripe).
    pub node_rate: u32,
    /// Transactions an idle node admits at once. Default: 6.
    pub node_burst: u32,
    /// `pool`: this process runs every node of a connection and autoscales between min and max;
    /// `replica`: this process is one node and an external scaler (e.g. a Kubernetes HPA) adds
    /// replicas. Default: `pool`.
    pub mode: NodeMode,
    /// Calls that may wait for a free node at once, per connection; more are refused with
    /// `RESOURCE_EXHAUSTED`. Default: 1000.
    pub max_queue: usize,
    /// Longest a call waits for a free node, whatever the caller's deadline. Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Share of a pool's capacity (0 < u ≤ 1) the autoscaler aims to use. Default: 0.8.
    pub target_utilization: f64,
    /// How often the autoscaler measures demand and decides. Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub scale_tick: Duration,
    /// How long demand must stay low before a pool gives back a node. Default: `30s`.
    #[serde(with = "humantime_serde")]
    pub stabilization_window: Duration,
    /// Requests per second allowed per Stripe account, shared by every connection using it.
    pub stripe_budget: StripeBudgetSettings,
}

impl Default for NodesSettings {
    fn default() -> Self {
        Self {
            node_rate: default_node_rate(),
            node_burst: default_node_burst(),
            mode: NodeMode::default(),
            max_queue: default_max_queue(),
            max_wait: default_max_wait(),
            target_utilization: default_target_utilization(),
            scale_tick: default_scale_tick(),
            stabilization_window: default_stabilization_window(),
            stripe_budget: StripeBudgetSettings::default(),
        }
    }
}

impl NodesSettings {
    /// The pool settings of one connection: these runtime-wide settings with its node counts.
    pub fn pool_settings(&self, nodes: &NodeSettings) -> crate::throttle::PoolSettings {
        crate::throttle::PoolSettings {
            node_rate: self.node_rate,
            node_burst: self.node_burst,
            min_nodes: nodes.min_node_count,
            max_nodes: nodes.max_node_count,
            max_queue: self.max_queue,
            max_wait: self.max_wait,
            target_utilization: self.target_utilization,
            scale_tick: self.scale_tick,
            stabilization_window: self.stabilization_window,
            mode: match self.mode {
                NodeMode::Pool => crate::throttle::PoolMode::Autoscale,
                NodeMode::Replica => crate::throttle::PoolMode::Replica,
            },
        }
    }

    /// The per-account budget settings.
    pub fn budget_settings(&self) -> crate::throttle::BudgetSettings {
        crate::throttle::BudgetSettings {
            test_mode_rate: self.stripe_budget.test,
            live_mode_rate: self.stripe_budget.live,
            max_wait: self.max_wait,
            ..crate::throttle::BudgetSettings::default()
        }
    }
}

/// How a connection's nodes are run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    /// Every node in this process; autoscaled between min and max.
    #[default]
    #[serde(alias = "autoscale")]
    Pool,
    /// This process is one node.
    Replica,
}

/// Stripe's own per-account rate limits, which the runtime stays under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeBudgetSettings {
    /// Requests/s per account with a test-mode key. Default: 25.
    pub test: u32,
    /// Requests/s per account with a live-mode key. Default: 100.
    pub live: u32,
    /// Share each account's budget with every replica of the fleet through Redis. Default: unset
    /// (each process enforces the budget alone: right for one process, wrong for a fleet).
    pub shared: Option<SharedBudgetSettings>,
}

impl Default for StripeBudgetSettings {
    fn default() -> Self {
        Self {
            test: default_test_mode_rate(),
            live: default_live_mode_rate(),
            shared: None,
        }
    }
}

/// The fleet-wide Stripe budget: a GCRA per account and mode, run atomically in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedBudgetSettings {
    /// Redis to share the budget through: `redis://host:6379/0`, or `rediss://` for TLS. No
    /// password here: see `redis_password`.
    pub redis_url: String,
    /// Redis' password, as a secret reference. Default: none.
    #[serde(default)]
    pub redis_password: Option<SecretRef>,
    /// While Redis is unreachable: `fail_open` (each replica enforces its share of the budget,
    /// rate ÷ replicas, locally) or `fail_closed` (calls are refused with `UNAVAILABLE` and a
    /// retry delay). Default: `fail_open`.
    #[serde(default)]
    pub on_redis_down: crate::throttle::OnSharedDown,
    /// Longest wait for Redis' answer before it counts as unreachable. Default: `200ms`.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Replicas assumed to share the budget until Redis has been reached once (afterwards: the
    /// replicas seen alive in Redis). Default: 2 (the minimum node count).
    #[serde(default = "default_assumed_replicas")]
    pub assumed_replicas: u32,
    /// Prefix of every Redis key the runtime writes. Default: `connector-runtime`.
    #[serde(default = "default_redis_key_prefix")]
    pub key_prefix: String,
}

/// 200 milliseconds.
pub const fn default_redis_timeout() -> Duration {
    Duration::from_millis(200)
}
/// 2 replicas.
pub const fn default_assumed_replicas() -> u32 {
    2
}
/// `connector-runtime`.
pub fn default_redis_key_prefix() -> String {
    "connector-runtime".to_owned()
}

/// The HTTP client that calls Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// Longest wait for a TCP and TLS connection. Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest one upstream request may take. Default: `30s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries of a failed upstream request (429, 409, 5xx, connection errors), within the
    /// caller's deadline. Default: 4.
    pub max_retries: u32,
    /// Backoff before the first retry; each later retry doubles it (full jitter: a random wait
    /// up to the doubled value), unless Stripe's `Retry-After` says otherwise. Default: `500ms`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest backoff between two retries. Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// Extra CA certificates (PEM) to trust besides the built-in roots, e.g. for a TLS-inspecting
    /// proxy. Default: unset.
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            max_retries: default_max_retries(),
            backoff_base: default_backoff_base(),
            backoff_cap: default_backoff_cap(),
            extra_ca_file: None,
        }
    }
}

/// 500 milliseconds.
pub const fn default_backoff_base() -> Duration {
    Duration::from_millis(500)
}
/// 5 seconds.
pub const fn default_backoff_cap() -> Duration {
    Duration::from_secs(5)
}

/// 5 seconds.
pub const fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
/// 30 seconds.
pub const fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
/// 4 retries.
pub const fn default_max_retries() -> u32 {
    4
}

/// The runtime's own log output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`. Default: `text`.
    pub format: LogFormat,
    /// A `tracing` filter: a level (`info`) or directives (`info,connector_runtime=debug`).
    /// `RUST_LOG`, when set, overrides it. Default: `info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

/// `info`.
pub fn default_log_level() -> String {
    "info".to_owned()
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests;
