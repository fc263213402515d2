//! Conversions between `pb::Connection` and the domain's `ConnectionSpec`: the API view of a
//! connection, and applying a request's fields (all, or those an update mask names) onto
//! settings. Pure; the service itself is `api::connections`.

use std::time::SystemTime;

use super::pb;
use crate::connections::model::{
    ConnectionSpec, LogLevel, NodeSettings, Origin, ProxyAuthScheme, ProxySettings, ProxySslType,
    SecretRef, ToolPolicy,
};
use crate::registry::ConnectionView;
use crate::violation::FieldViolation;

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

fn secret_ref(reference: &SecretRef) -> pb::SecretRef {
    pb::SecretRef {
        secret: reference.secret.clone(),
        version: reference.version.clone(),
    }
}

fn secret_from(proto: &pb::SecretRef) -> Option<SecretRef> {
    if proto.secret.is_empty() && proto.version.is_empty() {
        return None;
    }
    let version = if proto.version.is_empty() {
        "latest".to_owned()
    } else {
        proto.version.clone()
    };
    Some(SecretRef {
        secret: proto.secret.clone(),
        version,
    })
}

/// The API view of a connection: settings, references to secrets (never values), live figures.
pub fn to_proto(view: &ConnectionView) -> pb::Connection {
    let spec = &view.stored.spec;
    let proxy = &spec.proxy;
    pb::Connection {
        name: spec.resource_name(),
        description: spec.description.clone(),
        connector: spec.connector.clone(),
        connector_version: spec.connector_version.clone(),
        account_id: spec.account_id.clone().unwrap_or_default(),
        api_key: spec.api_key.as_ref().map(secret_ref),
        verbosity: i32::from(spec.verbosity),
        log_level: match spec.log_level {
            LogLevel::Error => pb::connection::LogLevel::Error,
            LogLevel::Warning => pb::connection::LogLevel::Warning,
            LogLevel::Info => pb::connection::LogLevel::Info,
            LogLevel::Debug => pb::connection::LogLevel::Debug,
        } as i32,
        proxy: Some(pb::ProxyConfig {
            enabled: proxy.enabled,
            auth_scheme: match proxy.auth_scheme {
                ProxyAuthScheme::Basic => pb::proxy_config::AuthScheme::Basic,
                ProxyAuthScheme::Digest => pb::proxy_config::AuthScheme::Digest,
                ProxyAuthScheme::None => pb::proxy_config::AuthScheme::None,
            } as i32,
            user: proxy.user.clone().unwrap_or_default(),
            password: proxy.password.as_ref().map(secret_ref),
            ssl_type: match proxy.ssl_type {
                ProxySslType::Auto => pb::proxy_config::SslType::Auto,
                ProxySslType::Always => pb::proxy_config::SslType::Always,
                ProxySslType::Never => pb::proxy_config::SslType::Never,
                ProxySslType::Tunnel => pb::proxy_config::SslType::Tunnel,
            } as i32,
            server_host: proxy.host.clone().unwrap_or_default(),
            server_port: proxy.port.map(i32::from).unwrap_or_default(),
        }),
        node_config: Some(pb::NodeConfig {
            min_node_count: spec.nodes.min_node_count as i32,
            max_node_count: spec.nodes.max_node_count as i32,
        }),
        labels: spec.labels.clone().into_iter().collect(),
        api_base_url: spec.api_base_url.clone(),
        create_time: Some(timestamp(view.stored.create_time)),
        update_time: Some(timestamp(view.stored.update_time)),
        origin: match view.stored.origin {
            Origin::ConfigFile => pb::connection::Origin::ConfigFile,
            Origin::Api => pb::connection::Origin::Api,
            Origin::Embedded => pb::connection::Origin::Embedded,
        } as i32,
        node_status: node_status(view),
        webhook_signing_secrets: spec
            .webhook_signing_secrets
            .iter()
            .map(secret_ref)
            .collect(),
        tool_policy: Some(tool_policy(&spec.tool_policy)),
    }
}

fn tool_policy(policy: &ToolPolicy) -> pb::ToolPolicy {
    pb::ToolPolicy {
        allow: policy.allow.clone(),
        allow_destructive: policy.allow_destructive.clone(),
        allow_live_destructive: policy.allow_live_destructive,
        deny: policy.deny.clone(),
    }
}

/// The live pool figures, when the connection has a runtime.
pub fn node_status(view: &ConnectionView) -> Option<pb::NodeStatus> {
    let runtime = view.runtime.as_ref().ok()?;
    let s = runtime.pool.status();
    Some(pb::NodeStatus {
        current_nodes: s.current_nodes as i32,
        desired_nodes: s.desired_nodes as i32,
        utilization: s.utilization,
        admitted: s.admitted,
        queued: s.queued,
        throttled: s.throttled,
        node_rate: f64::from(s.node_rate),
        budget_authority: runtime.budget.authority().as_str().to_owned(),
        budget_admitted: runtime.budget.counts().0,
    })
}

/// Field paths an update mask may name: every mutable field of `Connection`.
const MUTABLE_PATHS: [&str; 28] = [
    "description",
    "connector",
    "connector_version",
    "account_id",
    "api_key",
    "api_key.secret",
    "api_key.version",
    "verbosity",
    "log_level",
    "proxy",
    "proxy.enabled",
    "proxy.auth_scheme",
    "proxy.user",
    "proxy.password",
    "proxy.ssl_type",
    "proxy.server_host",
    "proxy.server_port",
    "node_config",
    "node_config.min_node_count",
    "node_config.max_node_count",
    "labels",
    "api_base_url",
    "webhook_signing_secrets",
    "tool_policy",
    "tool_policy.allow",
    "tool_policy.allow_destructive",
    "tool_policy.allow_live_destructive",
    "tool_policy.deny",
];

/// Which fields a request sets: every mutable one (no mask), or those its update mask names.
struct Mask<'a> {
    paths: &'a [String],
}

impl Mask<'_> {
    /// Whether `path` is set: named itself, or a message holding it or a field inside it is.
    fn wants(&self, path: &str) -> bool {
        self.paths.is_empty()
            || self.paths.iter().any(|p| {
                p == path
                    || p.starts_with(&format!("{path}."))
                    || path.starts_with(&format!("{p}."))
            })
    }

    /// Whether the message `path` is replaced whole rather than field by field.
    fn whole(&self, path: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| p == path)
    }

    /// A violation of `update_mask` for each path that names no mutable field.
    fn unknown_paths(&self) -> Vec<FieldViolation> {
        self.paths
            .iter()
            .filter(|path| !MUTABLE_PATHS.contains(&path.as_str()))
            .map(|path| {
                FieldViolation::new(
                    "update_mask",
                    format!("unknown or immutable field path {path:?}"),
                )
            })
            .collect()
    }
}

/// Applies the fields of `proto` named by `paths` (all mutable fields when empty) onto `spec`,
/// and returns the violations: unknown enum values, out-of-range numbers and unknown paths.
pub fn apply(
    spec: &mut ConnectionSpec,
    proto: &pb::Connection,
    paths: &[String],
) -> Vec<FieldViolation> {
    let mask = Mask { paths };
    let mut out = mask.unknown_paths();
    apply_identity(spec, proto, &mask);
    apply_logging(spec, proto, &mask, &mut out);
    if mask.wants("proxy") {
        let base = if mask.whole("proxy") {
            ProxySettings::default()
        } else {
            spec.proxy.clone()
        };
        let settings = proto.proxy.clone().unwrap_or_default();
        spec.proxy = proxy(base, &settings, &mask, &mut out);
    }
    if mask.wants("node_config") {
        apply_nodes(spec, proto.node_config.unwrap_or_default(), &mask, &mut out);
    }
    if mask.wants("labels") {
        spec.labels = proto.labels.clone().into_iter().collect();
    }
    if mask.wants("api_base_url") {
        spec.api_base_url = if proto.api_base_url.is_empty() {
            crate::connections::model::default_base_url()
        } else {
            proto.api_base_url.clone()
        };
    }
    if mask.wants("tool_policy") {
        apply_tool_policy(
            &mut spec.tool_policy,
            proto.tool_policy.clone().unwrap_or_default(),
            &mask,
        );
    }
    out
}

/// What the connection is and which secrets it uses: nothing here can be out of range.
fn apply_identity(spec: &mut ConnectionSpec, proto: &pb::Connection, mask: &Mask<'_>) {
    if mask.wants("description") {
        spec.description = proto.description.clone();
    }
    if mask.wants("connector") && !proto.connector.is_empty() {
        spec.connector = proto.connector.clone();
    }
    if mask.wants("connector_version") && !proto.connector_version.is_empty() {
        spec.connector_version = proto.connector_version.clone();
    }
    if mask.wants("account_id") {
        spec.account_id = (!proto.account_id.is_empty()).then(|| proto.account_id.clone());
    }
    if mask.wants("api_key") {
        spec.api_key = proto.api_key.as_ref().and_then(secret_from);
    }
    if mask.wants("webhook_signing_secrets") {
        spec.webhook_signing_secrets = proto
            .webhook_signing_secrets
            .iter()
            .filter_map(secret_from)
            .collect();
    }
}

fn apply_logging(
    spec: &mut ConnectionSpec,
    proto: &pb::Connection,
    mask: &Mask<'_>,
    out: &mut Vec<FieldViolation>,
) {
    if mask.wants("verbosity") {
        spec.verbosity = match proto.verbosity {
            0 => crate::connections::model::default_verbosity(),
            v => u8::try_from(v).unwrap_or(u8::MAX),
        };
    }
    if mask.wants("log_level") {
        spec.log_level = known(
            log_level_of(proto.log_level),
            ("log_level", proto.log_level),
            spec.log_level,
            out,
        );
    }
}

/// `base` with the proxy fields the mask names taken from `p`.
fn proxy(
    mut proxy: ProxySettings,
    p: &pb::ProxyConfig,
    mask: &Mask<'_>,
    out: &mut Vec<FieldViolation>,
) -> ProxySettings {
    if mask.wants("proxy.enabled") {
        proxy.enabled = p.enabled;
    }
    if mask.wants("proxy.auth_scheme") {
        proxy.auth_scheme = known(
            auth_scheme_of(p.auth_scheme),
            ("proxy.auth_scheme", p.auth_scheme),
            proxy.auth_scheme,
            out,
        );
    }
    if mask.wants("proxy.ssl_type") {
        proxy.ssl_type = known(
            ssl_type_of(p.ssl_type),
            ("proxy.ssl_type", p.ssl_type),
            proxy.ssl_type,
            out,
        );
    }
    if mask.wants("proxy.user") {
        proxy.user = (!p.user.is_empty()).then(|| p.user.clone());
    }
    if mask.wants("proxy.password") {
        proxy.password = p.password.as_ref().and_then(secret_from);
    }
    if mask.wants("proxy.server_host") {
        proxy.host = (!p.server_host.is_empty()).then(|| p.server_host.clone());
    }
    if mask.wants("proxy.server_port") {
        proxy.port = match p.server_port {
            0 => None,
            port => u16::try_from(port).map_or_else(
                |_| {
                    out.push(FieldViolation::new(
                        "proxy.server_port",
                        "must be between 1 and 65535".to_owned(),
                    ));
                    None
                },
                Some,
            ),
        };
    }
    proxy
}

/// Node counts: 0 means the default, a negative count is a violation.
fn apply_nodes(
    spec: &mut ConnectionSpec,
    n: pb::NodeConfig,
    mask: &Mask<'_>,
    out: &mut Vec<FieldViolation>,
) {
    let defaults = NodeSettings::default();
    let mut count = |value: i32, default: u32, field: &str| match value {
        0 => default,
        v if v < 0 => {
            out.push(FieldViolation::new(field, "must be at least 1".to_owned()));
            default
        }
        v => v as u32,
    };
    if mask.wants("node_config.min_node_count") {
        spec.nodes.min_node_count = count(
            n.min_node_count,
            defaults.min_node_count,
            "node_config.min_node_count",
        );
    }
    if mask.wants("node_config.max_node_count") {
        spec.nodes.max_node_count = count(
            n.max_node_count,
            defaults.max_node_count,
            "node_config.max_node_count",
        );
    }
}

fn apply_tool_policy(policy: &mut ToolPolicy, p: pb::ToolPolicy, mask: &Mask<'_>) {
    if mask.wants("tool_policy.allow") {
        policy.allow = p.allow;
    }
    if mask.wants("tool_policy.allow_destructive") {
        policy.allow_destructive = p.allow_destructive;
    }
    if mask.wants("tool_policy.allow_live_destructive") {
        policy.allow_live_destructive = p.allow_live_destructive;
    }
    if mask.wants("tool_policy.deny") {
        policy.deny = p.deny;
    }
}

/// A converted enum value, or `current` and a violation naming the unknown raw value.
fn known<T>(
    converted: Option<T>,
    (field, raw): (&str, i32),
    current: T,
    out: &mut Vec<FieldViolation>,
) -> T {
    converted.unwrap_or_else(|| {
        out.push(FieldViolation::new(field, format!("unknown value {raw}")));
        current
    })
}

fn log_level_of(value: i32) -> Option<LogLevel> {
    use pb::connection::LogLevel as Proto;
    Some(match Proto::try_from(value).ok()? {
        Proto::Unspecified | Proto::Error => LogLevel::Error,
        Proto::Warning => LogLevel::Warning,
        Proto::Info => LogLevel::Info,
        Proto::Debug => LogLevel::Debug,
    })
}

fn auth_scheme_of(value: i32) -> Option<ProxyAuthScheme> {
    use pb::proxy_config::AuthScheme as Proto;
    Some(match Proto::try_from(value).ok()? {
        Proto::Unspecified | Proto::None => ProxyAuthScheme::None,
        Proto::Basic => ProxyAuthScheme::Basic,
        Proto::Digest => ProxyAuthScheme::Digest,
    })
}

fn ssl_type_of(value: i32) -> Option<ProxySslType> {
    use pb::proxy_config::SslType as Proto;
    Some(match Proto::try_from(value).ok()? {
        Proto::Unspecified | Proto::Auto => ProxySslType::Auto,
        Proto::Always => ProxySslType::Always,
        Proto::Never => ProxySslType::Never,
        Proto::Tunnel => ProxySslType::Tunnel,
    })
}
