//! ConnectionService: conversions between `pb::Connection` and the domain's `ConnectionSpec`,
//! update masks, and the status checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Code, Request, Response, Status};

use super::pb::connection_service_server::ConnectionService;
use super::services::offset_page;
use super::{names, pb, status};
use crate::connections::model::{
    ConnectionSpec, LogLevel, NodeSettings, Origin, ProxyAuthScheme, ProxySettings, ProxySslType,
    SecretRef, ToolPolicy,
};
use crate::connections::validate::Violation;
use crate::engine::FieldViolation;
use crate::registry::{ConnectionView, Registry, RegistryError};
use crate::upstream::client::CallOptions;

/// The ConnectionService implementation.
#[derive(Debug, Clone)]
pub struct ConnectionApi {
    pub registry: Arc<Registry>,
}

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

fn node_status(view: &ConnectionView) -> Option<pb::NodeStatus> {
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

/// Applies the fields of `proto` named by `paths` (all mutable fields when empty) onto `spec`.
/// Unknown enum values and unknown paths are field violations.
fn apply(
    spec: &mut ConnectionSpec,
    proto: &pb::Connection,
    paths: &[String],
    out: &mut Vec<FieldViolation>,
) {
    let all = paths.is_empty();
    let wants = |path: &str| {
        all || paths.iter().any(|p| {
            p == path || p.starts_with(&format!("{path}.")) || path.starts_with(&format!("{p}."))
        })
    };
    const KNOWN: [&str; 28] = [
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
    for path in paths {
        if !KNOWN.contains(&path.as_str()) {
            out.push(FieldViolation::new(
                "update_mask",
                format!("unknown or immutable field path {path:?}"),
            ));
        }
    }
    if wants("description") {
        spec.description = proto.description.clone();
    }
    if wants("connector") && !proto.connector.is_empty() {
        spec.connector = proto.connector.clone();
    }
    if wants("connector_version") && !proto.connector_version.is_empty() {
        spec.connector_version = proto.connector_version.clone();
    }
    if wants("account_id") {
        spec.account_id = (!proto.account_id.is_empty()).then(|| proto.account_id.clone());
    }
    if wants("api_key") {
        spec.api_key = proto.api_key.as_ref().and_then(secret_from);
    }
    if wants("webhook_signing_secrets") {
        spec.webhook_signing_secrets = proto
            .webhook_signing_secrets
            .iter()
            .filter_map(secret_from)
            .collect();
    }
    if wants("verbosity") {
        spec.verbosity = match proto.verbosity {
            0 => crate::connections::model::default_verbosity(),
            v => u8::try_from(v).unwrap_or(u8::MAX),
        };
    }
    if wants("log_level") {
        spec.log_level = match pb::connection::LogLevel::try_from(proto.log_level) {
            Ok(pb::connection::LogLevel::Unspecified | pb::connection::LogLevel::Error) => {
                LogLevel::Error
            }
            Ok(pb::connection::LogLevel::Warning) => LogLevel::Warning,
            Ok(pb::connection::LogLevel::Info) => LogLevel::Info,
            Ok(pb::connection::LogLevel::Debug) => LogLevel::Debug,
            Err(_) => {
                out.push(FieldViolation::new(
                    "log_level",
                    format!("unknown value {}", proto.log_level),
                ));
                spec.log_level
            }
        };
    }
    if wants("proxy") {
        let p = proto.proxy.clone().unwrap_or_default();
        let mut proxy = if all || paths.iter().any(|x| x == "proxy") {
            ProxySettings::default()
        } else {
            spec.proxy.clone()
        };
        if wants("proxy.enabled") {
            proxy.enabled = p.enabled;
        }
        if wants("proxy.auth_scheme") {
            proxy.auth_scheme = match pb::proxy_config::AuthScheme::try_from(p.auth_scheme) {
                Ok(
                    pb::proxy_config::AuthScheme::Unspecified | pb::proxy_config::AuthScheme::None,
                ) => ProxyAuthScheme::None,
                Ok(pb::proxy_config::AuthScheme::Basic) => ProxyAuthScheme::Basic,
                Ok(pb::proxy_config::AuthScheme::Digest) => ProxyAuthScheme::Digest,
                Err(_) => {
                    out.push(FieldViolation::new(
                        "proxy.auth_scheme",
                        format!("unknown value {}", p.auth_scheme),
                    ));
                    proxy.auth_scheme
                }
            };
        }
        if wants("proxy.ssl_type") {
            proxy.ssl_type = match pb::proxy_config::SslType::try_from(p.ssl_type) {
                Ok(pb::proxy_config::SslType::Unspecified | pb::proxy_config::SslType::Auto) => {
                    ProxySslType::Auto
                }
                Ok(pb::proxy_config::SslType::Always) => ProxySslType::Always,
                Ok(pb::proxy_config::SslType::Never) => ProxySslType::Never,
                Ok(pb::proxy_config::SslType::Tunnel) => ProxySslType::Tunnel,
                Err(_) => {
                    out.push(FieldViolation::new(
                        "proxy.ssl_type",
                        format!("unknown value {}", p.ssl_type),
                    ));
                    proxy.ssl_type
                }
            };
        }
        if wants("proxy.user") {
            proxy.user = (!p.user.is_empty()).then(|| p.user.clone());
        }
        if wants("proxy.password") {
            proxy.password = p.password.as_ref().and_then(secret_from);
        }
        if wants("proxy.server_host") {
            proxy.host = (!p.server_host.is_empty()).then(|| p.server_host.clone());
        }
        if wants("proxy.server_port") {
            proxy.port = match p.server_port {
                0 => None,
                port => match u16::try_from(port) {
                    Ok(port) => Some(port),
                    Err(_) => {
                        out.push(FieldViolation::new(
                            "proxy.server_port",
                            "must be between 1 and 65535".to_owned(),
                        ));
                        None
                    }
                },
            };
        }
        spec.proxy = proxy;
    }
    if wants("node_config") {
        let n = proto.node_config.unwrap_or_default();
        let defaults = NodeSettings::default();
        let count =
            |value: i32, default: u32, field: &str, out: &mut Vec<FieldViolation>| match value {
                0 => default,
                v if v < 0 => {
                    out.push(FieldViolation::new(field, "must be at least 1".to_owned()));
                    default
                }
                v => v as u32,
            };
        if wants("node_config.min_node_count") {
            spec.nodes.min_node_count = count(
                n.min_node_count,
                defaults.min_node_count,
                "node_config.min_node_count",
                out,
            );
        }
        if wants("node_config.max_node_count") {
            spec.nodes.max_node_count = count(
                n.max_node_count,
                defaults.max_node_count,
                "node_config.max_node_count",
                out,
            );
        }
    }
    if wants("labels") {
        spec.labels = proto.labels.clone().into_iter().collect();
    }
    if wants("api_base_url") {
        spec.api_base_url = if proto.api_base_url.is_empty() {
            crate::connections::model::default_base_url()
        } else {
            proto.api_base_url.clone()
        };
    }
    if wants("tool_policy") {
        let p = proto.tool_policy.clone().unwrap_or_default();
        let policy = &mut spec.tool_policy;
        if wants("tool_policy.allow") {
            policy.allow = p.allow;
        }
        if wants("tool_policy.allow_destructive") {
            policy.allow_destructive = p.allow_destructive;
        }
        if wants("tool_policy.allow_live_destructive") {
            policy.allow_live_destructive = p.allow_live_destructive;
        }
        if wants("tool_policy.deny") {
            policy.deny = p.deny;
        }
    }
}

fn registry_error(error: &RegistryError) -> Status {
    match error {
        RegistryError::NotFound(id) => status::status(
            Code::NotFound,
            "CONNECTION_NOT_FOUND",
            error.to_string(),
            HashMap::from([("connection".to_owned(), id.clone())]),
        ),
        RegistryError::AlreadyExists(id) => status::status(
            Code::AlreadyExists,
            "CONNECTION_ALREADY_EXISTS",
            error.to_string(),
            HashMap::from([("connection".to_owned(), id.clone())]),
        ),
        RegistryError::Invalid(violations) => violations_status(violations),
        RegistryError::ReadOnly(id) => status::status(
            Code::FailedPrecondition,
            "CONNECTION_READ_ONLY",
            error.to_string(),
            HashMap::from([("connection".to_owned(), id.clone())]),
        ),
        RegistryError::Store(_) => status::status(
            Code::Internal,
            "PERSISTENCE_FAILED",
            error.to_string(),
            HashMap::new(),
        ),
    }
}

/// INVALID_ARGUMENT with each broken rule as a field violation; the first rule's reason leads.
fn violations_status(violations: &[Violation]) -> Status {
    let reason = violations.first().map_or("INVALID_ARGUMENT", |v| v.reason);
    let reasons: Vec<&str> = violations.iter().map(|v| v.reason).collect();
    let fields: Vec<FieldViolation> = violations
        .iter()
        .map(|v| FieldViolation::new(&format!("connection.{}", v.field), v.description.clone()))
        .collect();
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    status::bad_request(
        reason,
        HashMap::from([("reasons".to_owned(), reasons.join(","))]),
        format!("invalid connection: {message}"),
        &fields,
    )
}

fn view_or_not_found(registry: &Registry, id: &str) -> Result<ConnectionView, Status> {
    registry
        .get(id)
        .ok_or_else(|| registry_error(&RegistryError::NotFound(id.to_owned())))
}

#[tonic::async_trait]
impl ConnectionService for ConnectionApi {
    async fn create_connection(
        &self,
        request: Request<pb::CreateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let r = request.into_inner();
        let connection = r
            .connection
            .ok_or_else(|| status::invalid_field("connection", "is required"))?;
        let id = if !r.connection_id.is_empty() {
            r.connection_id.clone()
        } else {
            names::connection(&connection.name, "connection.name")?
        };
        let mut spec = ConnectionSpec::with_id(id);
        let mut violations = Vec::new();
        apply(&mut spec, &connection, &[], &mut violations);
        if !violations.is_empty() {
            return Err(status::invalid_argument("invalid connection", &violations));
        }
        let view = self.registry.create(spec).map_err(|e| registry_error(&e))?;
        tracing::info!(connection = %view.stored.spec.id, "connection created");
        Ok(Response::new(to_proto(&view)))
    }

    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let id = names::connection(&request.get_ref().name, "name")?;
        Ok(Response::new(to_proto(&view_or_not_found(
            &self.registry,
            &id,
        )?)))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let r = request.into_inner();
        let views = self.registry.list();
        let (page, next) =
            offset_page(&views, r.page_size, &r.page_token, 50, 1000, "connections")?;
        Ok(Response::new(pb::ListConnectionsResponse {
            connections: page.iter().map(to_proto).collect(),
            next_page_token: next,
        }))
    }

    async fn update_connection(
        &self,
        request: Request<pb::UpdateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let r = request.into_inner();
        let connection = r
            .connection
            .ok_or_else(|| status::invalid_field("connection", "is required"))?;
        let id = names::connection(&connection.name, "connection.name")?;
        let current = view_or_not_found(&self.registry, &id)?;
        let mut spec = current.stored.spec.clone();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut violations = Vec::new();
        apply(&mut spec, &connection, &paths, &mut violations);
        if !violations.is_empty() {
            return Err(status::invalid_argument("invalid update", &violations));
        }
        let view = self.registry.update(spec).map_err(|e| registry_error(&e))?;
        tracing::info!(connection = %id, "connection updated");
        Ok(Response::new(to_proto(&view)))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Result<Response<()>, Status> {
        let id = names::connection(&request.get_ref().name, "name")?;
        self.registry.delete(&id).map_err(|e| registry_error(&e))?;
        tracing::info!(connection = %id, "connection deleted");
        Ok(Response::new(()))
    }

    async fn check_status(
        &self,
        request: Request<pb::CheckStatusRequest>,
    ) -> Result<Response<pb::CheckStatusResponse>, Status> {
        let deadline = super::deadline::of(&request);
        let id = names::connection(&request.get_ref().name, "name")?;
        let view = view_or_not_found(&self.registry, &id)?;
        use pb::check_status_response::State;
        let (state, description) = match &view.runtime {
            Err(reason) => (
                State::AuthError,
                format!("the connection's credentials are not usable: {reason}"),
            ),
            Ok(runtime) => {
                // The dialect's cheapest authenticated read. It does not take a node, so a
                // saturated pool still reports its upstream health.
                let probe = runtime.dialect().status_probe();
                let options = CallOptions {
                    idempotency_key: None,
                    deadline: Some(deadline.unwrap_or_else(|| {
                        tokio::time::Instant::now() + std::time::Duration::from_secs(10)
                    })),
                };
                match runtime.client.send(&probe, &options).await {
                    Ok(_) => (
                        State::Active,
                        "the upstream accepts the connection's key".to_owned(),
                    ),
                    Err(crate::engine::EngineError::Upstream(e))
                        if e.http_status == 401 || e.http_status == 403 =>
                    {
                        (
                            State::AuthError,
                            format!("the upstream rejected the key: {}", e.message),
                        )
                    }
                    Err(e @ crate::engine::EngineError::ProxyAuthentication(_)) => {
                        (State::AuthError, e.to_string())
                    }
                    Err(e) => (State::Error, e.to_string()),
                }
            }
        };
        Ok(Response::new(pb::CheckStatusResponse {
            state: state as i32,
            description,
            node_status: node_status(&view),
        }))
    }

    async fn check_readiness(
        &self,
        request: Request<pb::CheckReadinessRequest>,
    ) -> Result<Response<pb::CheckReadinessResponse>, Status> {
        let id = names::connection(&request.get_ref().name, "name")?;
        let view = view_or_not_found(&self.registry, &id)?;
        let status = match &view.runtime {
            Ok(_) => "READY".to_owned(),
            Err(reason) => format!("NOT_READY: {reason}"),
        };
        Ok(Response::new(pb::CheckReadinessResponse { status }))
    }
}
