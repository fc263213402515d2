//! The live connections: each stored connection's settings plus what serves it (its upstream
//! client, node pool and Stripe budget). Changes validate first, persist second, and apply live:
//! a changed node configuration reconfigures the existing pool, so calls in flight are not dropped.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::connections::model::{
    ConnectionSpec, Origin, ProxyAuthScheme, ProxySslType, StoredConnection,
};
use crate::connections::store::{ConnectionStore, StoreError};
use crate::connections::validate::{self, Violation};
use crate::engine::{ConnectionRuntime, EngineError};
use crate::secrets::SecretResolver;
use crate::throttle::{
    AccountBudgets, BudgetSettings, NodePool, PoolSettings, PoolStatus, SharedBudget,
};
use crate::upstream::client::{ClientOptions, ProxyOptions, Redacted, UpstreamClient};
use crate::upstream::dialect::{Credentials, Dialect};
use crate::upstream::proxy_tunnel::{TunnelAdapter, TunnelAuth, TunnelProxy};

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
    Invalid(Vec<Violation>),
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
    pub runtime: Result<Arc<ConnectionRuntime>, String>,
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
            AccountBudgets::with_shared(options.budgets.clone(), options.shared_budget.clone());
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

    pub fn secrets(&self) -> &SecretResolver {
        &self.secrets
    }

    /// The runtime serving a connection, for entity and action calls.
    pub fn runtime(&self, id: &str) -> Result<Arc<ConnectionRuntime>, EngineError> {
        match self.read().get(id) {
            None => Err(EngineError::ConnectionNotFound(id.to_owned())),
            Some(view) => view.runtime.clone().map_err(EngineError::NotReady),
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

    pub fn create(&self, spec: ConnectionSpec) -> Result<ConnectionView, RegistryError> {
        if self.read().contains_key(&spec.id) {
            return Err(RegistryError::AlreadyExists(spec.id));
        }
        validate::validate(&spec, &self.secrets).map_err(RegistryError::Invalid)?;
        let stored = self.store.create(spec)?;
        let view = self.build(stored, None);
        self.write()
            .insert(view.stored.spec.id.clone(), view.clone());
        Ok(view)
    }

    pub fn update(&self, spec: ConnectionSpec) -> Result<ConnectionView, RegistryError> {
        let previous = self
            .get(&spec.id)
            .ok_or_else(|| RegistryError::NotFound(spec.id.clone()))?;
        let stored = if previous.stored.origin == Origin::Embedded {
            if !only_operational_changes(&previous.stored.spec, &spec) {
                return Err(RegistryError::ReadOnly(spec.id));
            }
            validate::validate_embedded(&spec, &self.secrets).map_err(RegistryError::Invalid)?;
            self.store.update_embedded(spec)?
        } else {
            validate::validate(&spec, &self.secrets).map_err(RegistryError::Invalid)?;
            self.store.update(spec)?
        };
        let pool = previous.runtime.as_ref().ok().map(|r| r.pool.clone());
        let view = self.build(stored, pool);
        self.write()
            .insert(view.stored.spec.id.clone(), view.clone());
        Ok(view)
    }

    pub fn delete(&self, id: &str) -> Result<(), RegistryError> {
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
        let runtime = self.build_runtime(&stored.spec, pool).map(Arc::new);
        if let Err(reason) = &runtime {
            tracing::warn!(connection = %stored.spec.id, %reason, "connection is not ready");
        }
        ConnectionView { stored, runtime }
    }

    fn build_runtime(
        &self,
        spec: &ConnectionSpec,
        pool: Option<Arc<NodePool>>,
    ) -> Result<ConnectionRuntime, String> {
        let api_key = match (&spec.api_key, &self.sandbox) {
            (Some(reference), _) => self
                .secrets
                .resolve(reference)
                .map_err(|e| e.to_string())?
                .expose()
                .to_owned(),
            (None, Some(sandbox)) if spec.id == EMBEDDED_CONNECTION_ID => sandbox.api_key.clone(),
            (None, _) => return Err("api_key: no Stripe key configured".to_owned()),
        };
        let mut proxy_adapter = None;
        let proxy = if spec.proxy.enabled {
            let host = spec
                .proxy
                .host
                .clone()
                .ok_or("proxy.server_host: required when the proxy is enabled")?;
            let port = spec
                .proxy
                .port
                .ok_or("proxy.server_port: required when the proxy is enabled")?;
            let password = match &spec.proxy.password {
                Some(reference) => self
                    .secrets
                    .resolve(reference)
                    .map_err(|e| e.to_string())?
                    .expose()
                    .to_owned(),
                None => String::new(),
            };
            let user = spec.proxy.user.clone().unwrap_or_default();
            let tunnel_all = spec.proxy.ssl_type == ProxySslType::Tunnel
                || spec.proxy.auth_scheme == ProxyAuthScheme::Digest;
            if tunnel_all {
                if spec.proxy.ssl_type == ProxySslType::Always {
                    return Err("proxy: DIGEST with SSL type ALWAYS is not supported".to_owned());
                }
                // The client cannot answer a Digest challenge nor tunnel plain HTTP; the adapter does.
                let auth = match spec.proxy.auth_scheme {
                    ProxyAuthScheme::None => TunnelAuth::None,
                    ProxyAuthScheme::Basic => TunnelAuth::Basic {
                        user,
                        password: Redacted::new(password),
                    },
                    ProxyAuthScheme::Digest => TunnelAuth::Digest {
                        user,
                        password: Redacted::new(password),
                    },
                };
                let adapter = TunnelAdapter::start(TunnelProxy {
                    proxy: format!("{host}:{port}"),
                    auth,
                })
                .map_err(|e| format!("proxy: cannot start the tunnelling adapter: {e}"))?;
                let url = adapter.url();
                proxy_adapter = Some(Arc::new(adapter));
                Some(ProxyOptions {
                    url,
                    basic_auth: None,
                })
            } else {
                let tls = if spec.proxy.ssl_type == ProxySslType::Always {
                    "https"
                } else {
                    "http"
                };
                let basic_auth = (spec.proxy.auth_scheme == ProxyAuthScheme::Basic)
                    .then(|| (user, Redacted::new(password)));
                Some(ProxyOptions {
                    url: format!("{tls}://{host}:{port}"),
                    basic_auth,
                })
            }
        } else {
            None
        };
        let account = self.options.dialect.rate_account(&Credentials {
            api_key: &api_key,
            account_id: spec.account_id.as_deref(),
            api_version: &self.options.api_version,
        });
        let budget = self.budgets.budget_for(&account.key, account.live);
        let client = UpstreamClient::new(
            ClientOptions {
                base_url: spec.api_base_url.clone(),
                api_key: Redacted::new(api_key),
                account_id: spec.account_id.clone(),
                api_version: self.options.api_version.clone(),
                connect_timeout: self.options.connect_timeout,
                request_timeout: self.options.request_timeout,
                max_retries: self.options.max_retries,
                backoff_base: self.options.backoff_base,
                backoff_cap: self.options.backoff_cap,
                proxy,
                extra_ca_pem: self.options.extra_ca_pem.clone(),
                verbosity: spec.verbosity,
                log_level: spec.log_level,
                connection: spec.id.clone(),
            },
            self.options.dialect.clone(),
        )
        .map_err(|e| e.to_string())?;
        let (min, max) = (spec.nodes.min_node_count, spec.nodes.max_node_count);
        let pool = match pool {
            Some(pool) => {
                pool.reconfigure(min, max).map_err(|e| e.to_string())?;
                pool
            }
            None => {
                let mut settings = self.options.pool.clone();
                settings.min_nodes = min;
                settings.max_nodes = max;
                NodePool::new(settings)
            }
        };
        Ok(ConnectionRuntime {
            id: spec.id.clone(),
            client,
            pool,
            budget,
            proxy_adapter,
        })
    }
}
