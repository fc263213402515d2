//! The live connections: each stored connection's settings plus what serves it (its upstream
//! client, node pool and Stripe budget). Changes validate first, persist second, and apply live:
//! a changed node configuration reconfigures the existing pool, so calls in flight are not dropped.
//! How one connection's runtime is built from its settings lives in [`build`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::connections::model::{ConnectionSpec, Origin, StoredConnection};
use crate::connections::store::{ConnectionStore, StoreError};
use crate::connections::validate;
use crate::engine::{ConnectionRuntime, EngineError};
use crate::secrets::SecretResolver;
use crate::throttle::{
    AccountBudgets, BudgetSettings, NodePool, PoolSettings, PoolStatus, SharedBudget,
};
use crate::upstream::dialect::Dialect;
use crate::violation::FieldViolation;

mod build;

pub use build::BuildError;
use build::RuntimeBuilder;

/// The embedded connection's id, wired to the built-in sandbox.
pub const EMBEDDED_CONNECTION_ID: &str = "stripe-sandbox";

/// Runtime-wide settings every connection's runtime is built from.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Node pool defaults; each connection's min/max override the bounds.
    pub pool: PoolSettings,
    pub budgets: BudgetSettings,
    /// The fleet-wide limiter every account budget reserves on, when budgets are shared.
    pub shared_budget: Option<SharedBudget>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub extra_ca_pem: Option<Vec<u8>>,
    /// The API version the connector spec describes (Stripe's dialect sends it as `Stripe-Version`).
    pub api_version: String,
    /// The connector spec's upstream dialect.
    pub dialect: Arc<dyn Dialect>,
}

/// The built-in sandbox the embedded connection talks to.
#[derive(Debug, Clone)]
pub struct SandboxTarget {
    pub base_url: String,
    pub api_key: String,
}

/// Why a connection change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("connection {0:?} not found")]
    NotFound(String),
    #[error("connection {0:?} already exists")]
    AlreadyExists(String),
    #[error("invalid connection: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error(
        "connection {0:?} is managed by the runtime (the embedded sandbox connection): only its operational settings (node_config, labels, verbosity, log_level) can change, and it cannot be deleted"
    )]
    ReadOnly(String),
    #[error("cannot persist the change: {0}")]
    Store(String),
}

impl From<StoreError> for RegistryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists { id } => Self::AlreadyExists(id),
            StoreError::NotFound { id } => Self::NotFound(id),
            StoreError::Embedded { id } => Self::ReadOnly(id),
            other => Self::Store(other.to_string()),
        }
    }
}

/// A connection with its live state.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub stored: Arc<StoredConnection>,
    /// The runtime serving it, or why its settings do not make one.
    pub runtime: Result<Arc<ConnectionRuntime>, BuildError>,
}

impl ConnectionView {
    pub fn pool_status(&self) -> Option<PoolStatus> {
        self.runtime.as_ref().ok().map(|r| r.pool.status())
    }
}

/// The live connections.
pub struct Registry {
    store: ConnectionStore,
    secrets: SecretResolver,
    options: RuntimeOptions,
    budgets: AccountBudgets,
    sandbox: Option<SandboxTarget>,
    live: RwLock<HashMap<String, ConnectionView>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("connections", &self.ids())
            .finish()
    }
}

/// Whether `next` differs from `current` only in settings an operator may change on the embedded
/// connection for the life of the process: node counts, labels, verbosity and log level. Its key,
/// base URL, account and proxy stay those of the built-in sandbox.
fn only_operational_changes(current: &ConnectionSpec, next: &ConnectionSpec) -> bool {
    let mut fixed = next.clone();
    fixed.nodes = current.nodes;
    fixed.labels = current.labels.clone();
    fixed.verbosity = current.verbosity;
    fixed.log_level = current.log_level;
    &fixed == current
}

impl Registry {
    /// Builds the live state of every stored connection (and the embedded one, when a sandbox is
    /// running). A connection whose secret does not resolve is kept, not ready, with the reason.
    pub fn new(
        store: ConnectionStore,
        secrets: SecretResolver,
        options: RuntimeOptions,
        sandbox: Option<SandboxTarget>,
    ) -> Self {
        let budgets =
            AccountBudgets::with_shared(options.budgets.clone(), options.shared_budget.clone())
                .for_upstream(options.dialect.display_name());
        if let Some(target) = &sandbox {
            let mut spec = ConnectionSpec::with_id(EMBEDDED_CONNECTION_ID);
            spec.description =
                "Built-in Stripe test-mode sandbox (no Stripe account needed)".to_owned();
            spec.api_base_url = target.base_url.clone();
            // The store keeps it in memory only and refuses to change or delete it.
            if let Err(error) = store.add_embedded(spec) {
                tracing::warn!(%error, "the embedded sandbox connection was not added");
            }
        }
        let registry = Self {
            store,
            secrets,
            options,
            budgets,
            sandbox,
            live: RwLock::new(HashMap::new()),
        };
        for stored in registry.store.list() {
            let view = registry.build(stored, None);
            registry.write().insert(view.stored.spec.id.clone(), view);
        }
        registry
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ConnectionView>> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ConnectionView>> {
        self.live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The upstream dialect every connection speaks.
    pub fn dialect(&self) -> &dyn Dialect {
        self.options.dialect.as_ref()
    }

    pub fn secrets(&self) -> &SecretResolver {
        &self.secrets
    }

    /// The runtime serving a connection, for entity and action calls.
    pub fn runtime(&self, id: &str) -> Result<Arc<ConnectionRuntime>, EngineError> {
        match self.read().get(id) {
            None => Err(EngineError::ConnectionNotFound(id.to_owned())),
            Some(view) => view
                .runtime
                .clone()
                .map_err(|reason| EngineError::NotReady(reason.to_string())),
        }
    }

    pub fn get(&self, id: &str) -> Option<ConnectionView> {
        self.read().get(id).cloned()
    }

    /// Every connection, ordered by id.
    pub fn list(&self) -> Vec<ConnectionView> {
        let live = self.read();
        let mut views: Vec<ConnectionView> = live.values().cloned().collect();
        views.sort_by(|a, b| a.stored.spec.id.cmp(&b.stored.spec.id));
        views
    }

    /// Validates, persists and starts serving a new connection.
    pub async fn create(
        self: &Arc<Self>,
        spec: ConnectionSpec,
    ) -> Result<ConnectionView, RegistryError> {
        self.off_the_workers(move |registry| registry.create_now(spec))
            .await
    }

    /// Validates and persists new settings, then applies them live: the existing pool is
    /// reconfigured, so calls in flight are not dropped.
    pub async fn update(
        self: &Arc<Self>,
        spec: ConnectionSpec,
    ) -> Result<ConnectionView, RegistryError> {
        self.off_the_workers(move |registry| registry.update_now(spec))
            .await
    }

    /// Deletes a connection (persisted) and stops its pool.
    pub async fn delete(self: &Arc<Self>, id: &str) -> Result<(), RegistryError> {
        let id = id.to_owned();
        self.off_the_workers(move |registry| registry.delete_now(&id))
            .await
    }

    /// Runs a change on tokio's blocking pool: it reads secret files, writes and fsyncs the
    /// connection's file and builds its runtime, none of which may stall the async workers that
    /// serve calls. The change runs to its end even when the caller stops waiting, so the files
    /// and the live connections never disagree.
    async fn off_the_workers<T: Send + 'static>(
        self: &Arc<Self>,
        change: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let registry = Arc::clone(self);
        tokio::task::spawn_blocking(move || change(&registry))
            .await
            .map_err(|e| RegistryError::Store(format!("the change did not complete: {e}")))?
    }

    fn create_now(&self, spec: ConnectionSpec) -> Result<ConnectionView, RegistryError> {
        if self.read().contains_key(&spec.id) {
            return Err(RegistryError::AlreadyExists(spec.id));
        }
        validate::validate(&spec, &self.secrets, self.options.dialect.as_ref())
            .map_err(RegistryError::Invalid)?;
        let stored = self.store.create(spec)?;
        let view = self.build(stored, None);
        self.write()
            .insert(view.stored.spec.id.clone(), view.clone());
        Ok(view)
    }

    fn update_now(&self, spec: ConnectionSpec) -> Result<ConnectionView, RegistryError> {
        let previous = self
            .get(&spec.id)
            .ok_or_else(|| RegistryError::NotFound(spec.id.clone()))?;
        let stored = if previous.stored.origin == Origin::Embedded {
            if !only_operational_changes(&previous.stored.spec, &spec) {
                return Err(RegistryError::ReadOnly(spec.id));
            }
            validate::validate_embedded(&spec, &self.secrets, self.options.dialect.as_ref())
                .map_err(RegistryError::Invalid)?;
            self.store.update_embedded(spec)?
        } else {
            validate::validate(&spec, &self.secrets, self.options.dialect.as_ref())
                .map_err(RegistryError::Invalid)?;
            self.store.update(spec)?
        };
        let pool = previous.runtime.as_ref().ok().map(|r| r.pool.clone());
        let view = self.build(stored, pool);
        self.write()
            .insert(view.stored.spec.id.clone(), view.clone());
        Ok(view)
    }

    fn delete_now(&self, id: &str) -> Result<(), RegistryError> {
        self.store.delete(id)?;
        if let Some(view) = self.write().remove(id)
            && let Ok(runtime) = view.runtime
        {
            runtime.pool.shutdown();
        }
        Ok(())
    }

    /// Builds the runtime for stored settings, reusing (and reconfiguring) an existing pool.
    fn build(&self, stored: Arc<StoredConnection>, pool: Option<Arc<NodePool>>) -> ConnectionView {
        let builder = RuntimeBuilder {
            options: &self.options,
            secrets: &self.secrets,
            budgets: &self.budgets,
            sandbox: self.sandbox.as_ref(),
        };
        let runtime = builder.runtime(&stored.spec, pool).map(Arc::new);
        if let Err(reason) = &runtime {
            tracing::warn!(connection = %stored.spec.id, %reason, "connection is not ready");
        }
        ConnectionView { stored, runtime }
    }
}
