//! ConnectionService: creating, reading, changing and deleting connections, and checking them.
//! Conversions between `pb::Connection` and the domain live in `connection_convert`; every
//! error becomes a status in `status`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::connection_convert::{apply, node_status, to_proto};
use super::pb::check_status_response::State;
use super::pb::connection_service_server::ConnectionService;
use super::services::offset_page;
use super::{deadline, names, pb, status};
use crate::connections::model::ConnectionSpec;
use crate::engine::{ConnectionRuntime, EngineError};
use crate::registry::{ConnectionView, Registry, RegistryError};
use crate::upstream::client::CallOptions;

/// How long CheckStatus waits for the upstream when the caller set no deadline.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ConnectionService implementation.
#[derive(Debug, Clone)]
pub struct ConnectionApi {
    pub registry: Arc<Registry>,
    /// Event subscriptions, which go with their connection (`None` where no events run).
    pub events: Option<Arc<crate::events::EventHub>>,
}

impl ConnectionApi {
    fn view(&self, id: &str) -> Result<ConnectionView, RegistryError> {
        self.registry
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }
}

/// Sends the dialect's cheapest authenticated read and names the state its answer shows. It
/// does not take a node, so a saturated pool still reports its upstream health.
async fn probe(runtime: &ConnectionRuntime, deadline: Option<Instant>) -> (State, String) {
    let options = CallOptions {
        idempotency_key: None,
        deadline: Some(deadline.unwrap_or_else(|| Instant::now() + PROBE_TIMEOUT)),
    };
    match runtime
        .client
        .send(&runtime.client.dialect().status_probe(), &options)
        .await
    {
        Ok(_) => (
            State::Active,
            "the upstream accepts the connection's key".to_owned(),
        ),
        Err(EngineError::Upstream(e)) if e.http_status == 401 || e.http_status == 403 => (
            State::AuthError,
            format!("the upstream rejected the key: {}", e.message),
        ),
        Err(e @ EngineError::ProxyAuthentication(_)) => (State::AuthError, e.to_string()),
        Err(e) => (State::Error, e.to_string()),
    }
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
        let violations = apply(&mut spec, &connection, &[]);
        if !violations.is_empty() {
            return Err(status::invalid_argument("invalid connection", &violations));
        }
        let view = self.registry.create(spec).await?;
        tracing::info!(connection = %view.stored.spec.id, "connection created");
        Ok(Response::new(to_proto(&view)))
    }

    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let id = names::connection(&request.get_ref().name, "name")?;
        Ok(Response::new(to_proto(&self.view(&id)?)))
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
        let mut spec = self.view(&id)?.stored.spec.clone();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let violations = apply(&mut spec, &connection, &paths);
        if !violations.is_empty() {
            return Err(status::invalid_argument("invalid update", &violations));
        }
        let view = self.registry.update(spec).await?;
        tracing::info!(connection = %id, "connection updated");
        Ok(Response::new(to_proto(&view)))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Result<Response<()>, Status> {
        let id = names::connection(&request.get_ref().name, "name")?;
        self.registry.delete(&id).await?;
        let subscriptions = match &self.events {
            Some(events) => events.delete_connection(&id)?,
            None => 0,
        };
        tracing::info!(connection = %id, subscriptions, "connection deleted with its event subscriptions");
        Ok(Response::new(()))
    }

    async fn check_status(
        &self,
        request: Request<pb::CheckStatusRequest>,
    ) -> Result<Response<pb::CheckStatusResponse>, Status> {
        let deadline = deadline::of(&request);
        let id = names::connection(&request.get_ref().name, "name")?;
        let view = self.view(&id)?;
        let (state, description) = match &view.runtime {
            Ok(runtime) => probe(runtime, deadline).await,
            // The settings are at fault, not the upstream: nothing was sent, no key was rejected.
            Err(reason) => (
                State::Error,
                format!("the connection's settings cannot be used: {reason}"),
            ),
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
        let status = match &self.view(&id)?.runtime {
            Ok(_) => "READY".to_owned(),
            Err(reason) => format!("NOT_READY: {reason}"),
        };
        Ok(Response::new(pb::CheckReadinessResponse { status }))
    }
}
