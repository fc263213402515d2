//! The events part of a running service: the hub, the webhook listener (when `events.listen` is
//! set) and the catch-up task, started and stopped together by the composition root.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::catch_up::{self, CatchUp};
use super::listener::{self, ListenerHandle};
use super::{EventHub, EventsError, EventsSettings};
use crate::registry::Registry;
use crate::secrets::SecretResolver;
use crate::spec::model::ConnectorSpec;

/// Why the events part could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error("the webhook listener cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running events part.
#[derive(Debug)]
pub struct EventsRuntime {
    pub hub: Arc<EventHub>,
    listener: Option<ListenerHandle>,
    catch_up: CatchUp,
}

impl EventsRuntime {
    /// Opens the store under `data_dir`, starts deliveries, the listener and the catch-up.
    pub async fn start(
        data_dir: &Path,
        settings: &EventsSettings,
        spec: Arc<ConnectorSpec>,
        secrets: SecretResolver,
        registry: Arc<Registry>,
    ) -> Result<Self, StartError> {
        let hub = EventHub::open(data_dir, spec.clone(), secrets, settings.clone())?;
        let listener = match settings.listen {
            Some(addr) => {
                let bound = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                Some(
                    listener::start(bound, hub.clone(), registry.clone())
                        .map_err(|source| StartError::Bind { addr, source })?,
                )
            }
            None => None,
        };
        let catch_up = catch_up::start(hub.clone(), registry, spec);
        Ok(Self {
            hub,
            listener,
            catch_up,
        })
    }

    /// Where the webhook listener listens, when it runs.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(|l| l.addr)
    }

    /// Runs a catch-up pass now and waits for it.
    pub async fn catch_up_now(&self) {
        self.catch_up.run_now().await;
    }

    /// Stops receiving, then catch-up and deliveries, then the store.
    pub async fn shutdown(self) {
        if let Some(listener) = self.listener {
            listener.shutdown().await;
        }
        self.catch_up.stop();
        self.hub.shutdown();
    }
}
