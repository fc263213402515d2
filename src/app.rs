//! The composition root: builds every part from the settings, serves gRPC, and shuts down
//! gracefully (health NOT_SERVING first, then no new calls, then in-flight calls drain up to the
//! drain timeout).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;
use tonic::transport::{Identity as TlsIdentity, Server, ServerTlsConfig};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

use crate::api::auth::AuthLayer;
use crate::api::connections::ConnectionApi;
use crate::api::events::EventsApi;
use crate::api::mcp::{self, McpHttp, McpTarget};
use crate::api::pb;
use crate::api::pb::action_service_server::ActionServiceServer;
use crate::api::pb::connection_service_server::ConnectionServiceServer;
use crate::api::pb::entity_service_server::EntityServiceServer;
use crate::api::pb::event_subscription_service_server::EventSubscriptionServiceServer;
use crate::api::pb::tool_service_server::ToolServiceServer;
use crate::api::services::ApiState;
use crate::api::socket::ServerSocket;
use crate::api::tools::ToolApi;
use crate::auth::TokenTable;
use crate::config::Settings;
use crate::connections::model::NodeSettings;
use crate::connections::store::ConnectionStore;
use crate::engine::Engine;
use crate::events::EventHub;
use crate::events::runtime::EventsRuntime;
use crate::fleet::RedisBudget;
use crate::registry::{Registry, RuntimeOptions, SandboxTarget};
use crate::sandbox::{self, SandboxConfig, SandboxHandle};
use crate::spec::model::ConnectorSpec;
use crate::telemetry::{self, Board, CallLayer, MetricsServer};
use crate::throttle::SharedBudget;

/// The gRPC service names health reports on (besides the server as a whole, "").
const SERVICES: [&str; 5] = [
    "connectors.v1.EntityService",
    "connectors.v1.ActionService",
    "connectors.v1.ConnectionService",
    "connectors.v1.EventSubscriptionService",
    "connectors.v1.ToolService",
];

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every in-flight call finished.
    Completed,
    /// The drain timeout passed first; calls still in flight were abandoned.
    TimedOut,
}

/// A running service.
pub struct Running {
    /// Where gRPC listens.
    pub addr: SocketAddr,
    /// The built-in sandbox's base URL, when it runs.
    pub sandbox_url: Option<String>,
    /// Where the metrics port (`/metrics`, `/status`) listens, when `metrics.enabled`.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the webhook listener listens, when `events.listen` is set.
    pub webhook_addr: Option<SocketAddr>,
    /// Where MCP's streamable HTTP transport listens, when `mcp.listen` is set.
    pub mcp_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<DrainOutcome>>,
    sandbox: Option<SandboxHandle>,
    mcp: Option<McpHttp>,
    events: Option<EventsRuntime>,
    observed: Observed,
}

/// The status board and metrics port of a running service (stopped when dropped).
struct Observed {
    _board: Option<Arc<Board>>,
    server: Option<MetricsServer>,
}

impl Observed {
    fn stop(&mut self) {
        self.server = None;
        self._board = None;
    }
}

/// Starts the status board when anything reads it, and the metrics port when enabled.
async fn observe(settings: &Settings, registry: &Arc<Registry>) -> anyhow::Result<Observed> {
    let wanted = settings.metrics.enabled || telemetry::exporting();
    let board = wanted.then(|| Board::start(registry.clone()));
    let server = match (&board, settings.metrics.enabled) {
        (Some(board), true) => {
            let listen = settings.metrics.listen;
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding metrics.listen {listen}"))?;
            Some(MetricsServer::start(listener, board.clone())?)
        }
        _ => None,
    };
    Ok(Observed {
        _board: board,
        server,
    })
}

impl Running {
    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<DrainOutcome> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = self
            .task
            .await
            .map_err(|e| anyhow!("server task failed: {e}"))?;
        self.observed.stop();
        if let Some(mcp) = self.mcp.take() {
            mcp.shutdown().await;
        }
        if let Some(events) = self.events.take() {
            events.shutdown().await;
        }
        if let Some(sandbox) = self.sandbox.take() {
            sandbox.shutdown().await;
        }
        result
    }

    /// Reads the upstream event log now, without waiting for the catch-up interval; returns
    /// when that pass is over.
    pub async fn catch_up_now(&self) {
        if let Some(events) = &self.events {
            events.catch_up_now().await;
        }
    }

    /// Waits until the server stops on its own (e.g. after a signal handled by `serve`).
    pub async fn wait(mut self) -> anyhow::Result<DrainOutcome> {
        let result = (&mut self.task)
            .await
            .map_err(|e| anyhow!("server task failed: {e}"))?;
        self.observed.stop();
        if let Some(mcp) = self.mcp.take() {
            mcp.shutdown().await;
        }
        if let Some(events) = self.events.take() {
            events.shutdown().await;
        }
        if let Some(sandbox) = self.sandbox.take() {
            sandbox.shutdown().await;
        }
        result
    }
}

fn load_spec(settings: &Settings) -> anyhow::Result<Arc<ConnectorSpec>> {
    match &settings.spec_dir {
        Some(dir) => Ok(Arc::new(
            crate::spec::load_dir(dir).map_err(|e| anyhow!("{e}"))?,
        )),
        None => crate::spec::stripe_shared().map_err(|e| anyhow!("{e}")),
    }
}

fn token_table(settings: &Settings) -> anyhow::Result<TokenTable> {
    let resolver = settings.secret_resolver();
    let mut entries = Vec::new();
    for token in &settings.auth.tokens {
        let value = resolver
            .resolve(&token.token)
            .with_context(|| format!("auth token {:?}", token.name))?;
        entries.push((token.name.clone(), token.role, value.expose().to_owned()));
    }
    Ok(TokenTable::new(entries))
}

fn runtime_options(settings: &Settings, spec: &ConnectorSpec) -> anyhow::Result<RuntimeOptions> {
    let extra_ca_pem = match &settings.upstream.extra_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading upstream.extra_ca_file {}", path.display()))?,
        ),
        None => None,
    };
    Ok(RuntimeOptions {
        pool: settings.nodes.pool_settings(&NodeSettings::default()),
        budgets: settings.nodes.budget_settings(),
        shared_budget: shared_budget(settings)?,
        connect_timeout: settings.upstream.connect_timeout,
        request_timeout: settings.upstream.request_timeout,
        max_retries: settings.upstream.max_retries,
        backoff_base: settings.upstream.backoff_base,
        backoff_cap: settings.upstream.backoff_cap,
        extra_ca_pem,
        api_version: spec.connector.api_version.clone(),
        dialect: crate::dialects::for_spec(spec)?,
    })
}

/// The fleet-wide Stripe budget in Redis, when configured.
fn shared_budget(settings: &Settings) -> anyhow::Result<Option<SharedBudget>> {
    let Some(shared) = &settings.nodes.stripe_budget.shared else {
        return Ok(None);
    };
    let password = match &shared.redis_password {
        Some(reference) => Some(
            settings
                .secret_resolver()
                .resolve(reference)
                .context("nodes.stripe_budget.shared.redis_password")?,
        ),
        None => None,
    };
    let limiter = RedisBudget::start(shared, password)?;
    Ok(Some(SharedBudget {
        limiter,
        on_down: shared.on_redis_down,
    }))
}

/// The engine and the live connections (with the built-in sandbox when it should run): what
/// `serve` and `mcp` share.
async fn build_state(
    settings: &Settings,
) -> anyhow::Result<(ApiState, Option<SandboxHandle>, Arc<ConnectorSpec>)> {
    let spec = load_spec(settings)?;
    let store = ConnectionStore::open(&settings.data_dir, settings.connections.clone())
        .with_context(|| format!("opening the data directory {}", settings.data_dir.display()))?;

    let any_key = store.list().iter().any(|c| c.spec.api_key.is_some());
    let sandbox = if settings.sandbox.enabled.should_start(any_key) {
        let config = SandboxConfig {
            rate_limit: Some(settings.sandbox.rate_limit).filter(|r| *r > 0),
            ..SandboxConfig::default()
        };
        let handle = sandbox::start(spec.clone(), settings.sandbox.listen, config)
            .await
            .map_err(|e| anyhow!("starting the built-in sandbox: {e}"))?;
        tracing::info!(
            url = %handle.base_url(),
            "SANDBOX MODE: no Stripe key is configured, so the built-in Stripe test-mode sandbox serves the \
             embedded connection `stripe-sandbox`; no real Stripe account is used"
        );
        Some(handle)
    } else {
        None
    };
    let target = sandbox.as_ref().map(|h| SandboxTarget {
        base_url: h.base_url(),
        api_key: sandbox::SANDBOX_API_KEY.to_owned(),
    });
    let registry = Arc::new(Registry::new(
        store,
        settings.secret_resolver(),
        runtime_options(settings, &spec)?,
        target,
    ));
    let state = ApiState {
        engine: Engine::new(spec.clone()),
        registry,
    };
    Ok((state, sandbox, spec))
}

/// Serves one connection's agent tools over MCP's stdio transport (`connector-runtime mcp`):
/// the engine runs in this process with the same settings as `serve` (connections, sandbox,
/// node pools, budgets), without a gRPC listener. The caller is the local user, logged as `stdio`.
pub async fn run_mcp_stdio(settings: Settings, connection: String) -> anyhow::Result<()> {
    let (state, sandbox, _spec) = build_state(&settings).await?;
    if state.registry.get(&connection).is_none() {
        bail!(
            "no connection named {connection:?}; known: {}",
            state.registry.ids().join(", ")
        );
    }
    tracing::info!(%connection, "serving agent tools over MCP stdio");
    let target = McpTarget {
        connection,
        caller: crate::api::auth::Caller("stdio".to_owned()),
    };
    let served = mcp::serve_stdio(ToolApi::new(state), target).await;
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await;
    }
    served.map_err(|e| anyhow!("{e}"))
}

/// The gRPC server with its layers: call telemetry outermost, then token checks.
type GrpcRouter = Router<Stack<AuthLayer, Stack<CallLayer, Identity>>>;

/// Builds everything and starts serving on `listener` (bind it first; `127.0.0.1:0` in tests).
/// `cli_insecure` is the `--insecure` flag. `signal` starts a graceful shutdown when it completes.
pub async fn start(
    settings: Settings,
    cli_insecure: bool,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let mut checked = settings.clone();
    checked.server.listen = addr;
    if let Some(problem) = checked.exposure_problem(cli_insecure) {
        bail!("{problem}");
    }
    let tokens = Arc::new(token_table(&settings)?);
    let (state, sandbox, spec) = build_state(&settings).await?;
    let registry = state.registry.clone();
    let observed = observe(&settings, &registry).await?;
    let events = EventsRuntime::start(
        &settings.data_dir,
        &settings.events,
        spec.clone(),
        settings.secret_resolver(),
        registry.clone(),
    )
    .await
    .context("starting events")?;
    let tools = ToolApi::new(state.clone());
    let mcp_http = start_mcp_http(&settings, cli_insecure, &tools, &tokens).await?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_serving(&health_reporter, true).await;
    let services = Services {
        events: EventsApi {
            hub: events.hub.clone(),
            registry: registry.clone(),
        },
        connections: ConnectionApi {
            registry,
            events: Some(events.hub.clone()),
        },
        tools,
        state,
    };
    let router = router(&settings, &tokens, services, health_service)?;
    let (tx, rx) = oneshot::channel::<()>();
    let drain = Drain {
        requested: async move {
            tokio::select! {
                _ = signal => {},
                _ = rx => {},
            }
        },
        reporter: health_reporter,
        hub: events.hub.clone(),
        timeout: settings.server.drain_timeout,
    };
    let task = serve(router, listener, drain);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(%addr, auth = !tokens.is_empty(), tls = settings.server.tls.files().is_some(), worker_threads = workers, "connector-runtime serving gRPC");
    Ok(Running {
        addr,
        sandbox_url: sandbox.as_ref().map(SandboxHandle::base_url),
        metrics_addr: observed.server.as_ref().map(MetricsServer::addr),
        webhook_addr: events.webhook_addr(),
        mcp_addr: mcp_http.as_ref().map(|m| m.addr),
        mcp: mcp_http,
        shutdown: Some(tx),
        task,
        sandbox,
        events: Some(events),
        observed,
    })
}

/// MCP's streamable HTTP transport, when `mcp.listen` is set.
async fn start_mcp_http(
    settings: &Settings,
    cli_insecure: bool,
    tools: &ToolApi,
    tokens: &Arc<TokenTable>,
) -> anyhow::Result<Option<McpHttp>> {
    let Some(addr) = settings.mcp.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding mcp.listen {addr}"))?;
    let insecure = cli_insecure || settings.server.allow_insecure;
    Ok(Some(mcp::serve_http(
        tools.clone(),
        &settings.mcp,
        tokens.clone(),
        listener,
        insecure,
    )?))
}

/// The connector's gRPC services.
struct Services {
    state: ApiState,
    connections: ConnectionApi,
    events: EventsApi,
    tools: ToolApi,
}

/// Every service behind the telemetry and token layers, with health and reflection, over TLS
/// when `server.tls` is set.
fn router(
    settings: &Settings,
    tokens: &Arc<TokenTable>,
    services: Services,
    health: HealthServer<impl Health>,
) -> anyhow::Result<GrpcRouter> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let max = settings.server.max_message_bytes;
    Ok(server_builder(settings)?
        .layer(CallLayer)
        .layer(AuthLayer::new(tokens.clone()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            EntityServiceServer::new(services.state.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            ActionServiceServer::new(services.state)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            ConnectionServiceServer::new(services.connections)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            EventSubscriptionServiceServer::new(services.events)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            ToolServiceServer::new(services.tools)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        ))
}

/// A server builder, with TLS when `server.tls` names a certificate and key.
fn server_builder(settings: &Settings) -> anyhow::Result<Server> {
    let mut builder = Server::builder();
    if let Some((cert, key)) = settings.server.tls.files() {
        let cert = std::fs::read(cert)
            .with_context(|| format!("reading server.tls.cert_file {}", cert.display()))?;
        let key = std::fs::read(key)
            .with_context(|| format!("reading server.tls.key_file {}", key.display()))?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(TlsIdentity::from_pem(cert, key)))?;
    }
    Ok(builder)
}

/// What a graceful shutdown needs: when it is asked for, who to tell, how long calls may take.
struct Drain<F> {
    /// Completes when a shutdown is asked for (a signal, or `Running::shutdown`).
    requested: F,
    reporter: HealthReporter,
    hub: Arc<EventHub>,
    timeout: Duration,
}

/// Serves until a shutdown is asked for, then drains: health NOT_SERVING, no new calls, event
/// streams closed, and in-flight calls get `drain.timeout` to finish.
fn serve(
    router: GrpcRouter,
    listener: TcpListener,
    drain: Drain<impl Future<Output = ()> + Send + 'static>,
) -> JoinHandle<anyhow::Result<DrainOutcome>> {
    let Drain {
        requested,
        reporter,
        hub,
        timeout,
    } = drain;
    let (draining_tx, draining_rx) = oneshot::channel::<()>();
    let stop = async move {
        requested.await;
        tracing::info!(
            "shutting down: health NOT_SERVING, refusing new calls, draining in-flight calls"
        );
        set_serving(&reporter, false).await;
        // Event streams never finish on their own; they end here so the drain can complete.
        hub.close_streams();
        let _ = draining_tx.send(());
    };
    let incoming = TcpListenerStream::new(listener).map(|stream| stream.map(ServerSocket::new));
    let serve = router.serve_with_incoming_shutdown(incoming, stop);
    tokio::spawn(async move {
        tokio::pin!(serve);
        let drained = async {
            if draining_rx.await.is_ok() {
                tokio::time::sleep(timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = &mut serve => result.map(|()| DrainOutcome::Completed).map_err(|e| anyhow!("gRPC server: {e}")),
            _ = drained => {
                tracing::warn!(timeout = ?timeout, "drain timeout reached; abandoning calls still in flight");
                Ok(DrainOutcome::TimedOut)
            }
        }
    })
}

async fn set_serving(reporter: &HealthReporter, serving: bool) {
    for service in std::iter::once("").chain(SERVICES) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        reporter.set_service_status(service, status).await;
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
