//! The sandbox: a stateful, offline Stripe test-mode backend served over real HTTP on loopback.
//!
//! It serves every entity and action of a connector spec generically (create, retrieve, update,
//! delete, list, search, `expand[]`, idempotency keys, Stripe's errors) with objects shaped like
//! Stripe's at the pinned API version, and models the flows that matter (PaymentIntents and
//! SetupIntents with Stripe's test cards, PaymentMethods, Invoices, Quotes, Events and signed
//! webhooks to WebhookEndpoints, hosted pages). The
//! runtime talks to it exactly as it talks to Stripe; only the base URL differs. It owns its HTTP
//! server and in-memory state and must not depend on the engine or the gRPC API.

mod admin;
mod billing;
mod cards;
pub mod config;
mod currency;
mod defaults;
mod error;
mod events;
mod execute;
mod faults;
mod form;
mod idempotency;
mod intents;
mod json_schema;
mod objects;
mod pages;
mod payments;
mod rate_limit;
mod routes;
mod search;
mod server;
mod setup;
mod store;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{FaultConfig, FaultPhase, SandboxConfig, SimulatedClock};
pub use webhooks::WebhookFaults;

use crate::spec::model::ConnectorSpec;

/// The API key of the runtime's embedded default connection to the sandbox. Any `sk_test_` key is
/// accepted; this one only names the default.
pub const SANDBOX_API_KEY: &str = "sk_test_sandbox_offline_key_0000000000";

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid sandbox config: {0}")]
    Config(String),
    #[error("waiting for Ctrl-C failed: {0}")]
    Signal(std::io::Error),
}

/// A running sandbox. Dropping the handle stops it, as does [`SandboxHandle::shutdown`].
#[derive(Debug)]
pub struct SandboxHandle {
    local_addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl SandboxHandle {
    /// `http://127.0.0.1:PORT`: the base URL a connection uses instead of `https://api.stripe.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes open connections and waits for the server task to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "sandbox: the server task ended abnormally");
        }
    }
}

/// Binds `listen` (port 0 picks a free port) and serves the sandbox in a background task.
pub async fn start(
    spec: Arc<ConnectorSpec>,
    listen: SocketAddr,
    config: SandboxConfig,
) -> Result<SandboxHandle, SandboxError> {
    config.validate().map_err(SandboxError::Config)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| SandboxError::Bind {
        addr: listen,
        source,
    })?;
    let sandbox = Arc::new(server::Sandbox::new(spec, config));
    let (shutdown, shutdown_rx) = oneshot::channel();
    let task = tokio::spawn(server::serve(
        listener,
        server::router(sandbox),
        shutdown_rx,
    ));
    tracing::info!(base_url = %format!("http://{local_addr}"), "Stripe test-mode sandbox listening");
    Ok(SandboxHandle {
        local_addr,
        shutdown,
        task,
    })
}

/// Runs the sandbox until Ctrl-C (for `connector-runtime sandbox --listen ...`).
pub async fn run_until_ctrl_c(
    spec: Arc<ConnectorSpec>,
    listen: SocketAddr,
    config: SandboxConfig,
) -> Result<(), SandboxError> {
    let handle = start(spec, listen, config).await?;
    let result = tokio::signal::ctrl_c().await.map_err(SandboxError::Signal);
    handle.shutdown().await;
    result
}
