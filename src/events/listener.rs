//! The webhook listener: `POST /webhooks/{connection}` on its own port. A webhook is accepted
//! (200) only once it is verified against the connection's signing secrets and stored on disk;
//! anything else is refused with 400 and nothing stored: unknown connection, no secret configured,
//! body over the limit, missing, malformed, wrong or stale signature, or a body that is not an
//! event. A store failure answers 500 so the sender retries. Log lines name the connection and the
//! reason, never a secret, a signature or the body.
//!
//! The signature scheme and the event shape are Stripe's (`crate::stripe::{webhook, event}`);
//! this file only receives, decides and stores.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::EventHub;
use super::store::NewEvent;
use crate::registry::{ConnectionView, Registry};
use crate::secrets::Secret;
use crate::stripe::{event, webhook};

/// What the listener needs.
#[derive(Clone)]
struct Listener {
    hub: Arc<EventHub>,
    registry: Arc<Registry>,
}

/// A running listener.
#[derive(Debug)]
pub struct ListenerHandle {
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ListenerHandle {
    /// Stops accepting and waits for the server to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }
}

/// Serves webhooks on `listener` until shut down.
pub fn start(
    listener: TcpListener,
    hub: Arc<EventHub>,
    registry: Arc<Registry>,
) -> std::io::Result<ListenerHandle> {
    let addr = listener.local_addr()?;
    let router = Router::new()
        .route("/webhooks/{connection}", post(receive))
        .with_state(Listener { hub, registry });
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = stop.await;
        });
        if let Err(error) = serve.await {
            tracing::error!(%error, "webhook listener stopped");
        }
    });
    tracing::info!(%addr, "webhook listener serving POST /webhooks/{{connection}}");
    Ok(ListenerHandle {
        addr,
        shutdown,
        task,
    })
}

fn refuse(connection: &str, reason: &str) -> Response {
    tracing::warn!(%connection, %reason, "webhook refused");
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"message": reason}})),
    )
        .into_response()
}

async fn receive(
    State(listener): State<Listener>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = listener.hub.settings().max_body_bytes;
    let Some(view) = listener.registry.get(&connection) else {
        return refuse(&connection, "unknown connection");
    };
    let body: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return refuse(
                &connection,
                &format!("the body is larger than {limit} bytes or could not be read"),
            );
        }
    };
    match listener.verified_event(&connection, &view, &headers, &body) {
        Ok(new) => listener.store(new).await,
        Err(reason) => refuse(&connection, &reason),
    }
}

impl Listener {
    /// The event a delivery carries, once its signature verifies against one of the connection's
    /// signing secrets; why it is refused otherwise.
    fn verified_event(
        &self,
        connection: &str,
        view: &ConnectionView,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<NewEvent, String> {
        let secrets = self.signing_secrets(connection, view);
        let exposed: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
        let signature = headers
            .get(webhook::SIGNATURE_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let tolerance = self.hub.settings().signature_tolerance.as_secs();
        webhook::verify(signature, body, &exposed, unix_now(), tolerance)
            .map_err(|error| error.to_string())?;
        let (_, summary) = event::parse(body).map_err(|error| error.to_string())?;
        let payload =
            String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_owned())?;
        let entity_name = match (&summary.object_type, &summary.object_id) {
            (Some(object_type), Some(id)) => self.hub.entity_name(connection, object_type, id),
            _ => None,
        };
        Ok(NewEvent {
            id: summary.id,
            connection: connection.to_owned(),
            event_type: summary.event_type,
            created: summary.created,
            entity_name,
            payload,
            source: "webhook",
        })
    }

    /// The connection's signing secrets that resolve (one that does not is logged, not fatal:
    /// another may still verify the delivery).
    fn signing_secrets(&self, connection: &str, view: &ConnectionView) -> Vec<Secret> {
        let mut secrets = Vec::new();
        for reference in &view.stored.spec.webhook_signing_secrets {
            match self.registry.secrets().resolve(reference) {
                Ok(secret) => secrets.push(secret),
                Err(error) => {
                    tracing::error!(%connection, %error, "a webhook signing secret does not resolve")
                }
            }
        }
        secrets
    }

    /// Stores the event and answers the sender: 200 once it is stored (a repeat included), 500
    /// when it could not be, so the sender retries.
    async fn store(&self, new: NewEvent) -> Response {
        let (connection, id) = (new.connection.clone(), new.id.clone());
        match self.hub.record(new).await {
            Ok(inserted) => {
                tracing::debug!(%connection, event = %id, fresh = inserted.fresh, "webhook stored");
                (StatusCode::OK, axum::Json(json!({"received": true}))).into_response()
            }
            Err(error) => {
                tracing::error!(%connection, event = %id, %error, "webhook not stored; the sender will retry");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": {"message": "the event could not be stored"}})),
                )
                    .into_response()
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
