//! Shared test harness: starts the real service on 127.0.0.1:0 (with the built-in sandbox when
//! asked) and gives typed gRPC clients. No sleeps: the listener is bound before serving.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use connector_runtime::api::convert::{from_proto_struct, to_proto_struct};
use connector_runtime::api::pb;
use connector_runtime::api::pb::action_service_client::ActionServiceClient;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use connector_runtime::api::pb::entity_service_client::EntityServiceClient;
use connector_runtime::app::{self, Running};
use connector_runtime::auth::Role;
use connector_runtime::config::{Settings, TokenSettings};
use connector_runtime::connections::model::SecretRef;
use serde_json::{Map, Value};
use tonic::Request;
use tonic::transport::Channel;

mod process;
#[allow(unused_imports)]
pub use process::{ChildGuard, free_port, wait_for_port, wait_for_port_within};

pub const ADMIN_TOKEN: &str = "admin-token-0123456789";
pub const INVOKER_TOKEN: &str = "invoker-token-0123456789";

/// Every log line the test process writes, for checking that no secret leaks.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer.clone()))
            .try_init();
        buffer
    })
    .clone()
}

pub fn logs_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A temporary home: data dir and secret dir.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        Self { dir }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    /// Writes `<secrets>/<name>/<version>`.
    pub fn put_secret(&self, name: &str, version: &str, value: &str) {
        let dir = self.secrets_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(version), value).unwrap();
    }

    /// Settings for a test service: this home's dirs; tokens when `auth`.
    pub fn settings(&self, auth: bool) -> Settings {
        let mut settings = Settings {
            data_dir: self.data_dir(),
            ..Settings::default()
        };
        settings.secrets.dir = Some(self.secrets_dir());
        settings.sandbox.rate_limit = 0;
        if auth {
            self.put_secret("admin-token", "1", ADMIN_TOKEN);
            self.put_secret("invoker-token", "1", INVOKER_TOKEN);
            settings.auth.tokens = vec![
                TokenSettings {
                    name: "ops".to_owned(),
                    role: Role::Admin,
                    token: secret("admin-token"),
                },
                TokenSettings {
                    name: "flows".to_owned(),
                    role: Role::Invoker,
                    token: secret("invoker-token"),
                },
            ];
        }
        settings
    }
}

pub fn secret(name: &str) -> SecretRef {
    SecretRef {
        secret: name.to_owned(),
        version: "latest".to_owned(),
    }
}

/// A running service with clients.
pub struct Service {
    pub running: Option<Running>,
    pub channel: Channel,
    pub token: Option<String>,
}

pub async fn start(settings: Settings) -> Service {
    captured_logs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = app::start(settings, false, listener, std::future::pending())
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Service {
        running: Some(running),
        channel,
        token: None,
    }
}

impl Service {
    /// Stops the service gracefully.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.unwrap();
        }
    }

    /// Another caller of the same service, with another token.
    pub fn as_caller(&self, token: &str) -> Service {
        Service {
            running: None,
            channel: self.channel.clone(),
            token: Some(token.to_owned()),
        }
    }

    /// The built-in sandbox's base URL (the service must run it).
    pub fn sandbox_url(&self) -> String {
        self.running
            .as_ref()
            .and_then(|r| r.sandbox_url.clone())
            .expect("the service runs its sandbox")
    }

    /// Creates a connection through ConnectionService, failing the test if it is refused.
    pub async fn add_connection(&self, connection: pb::Connection) {
        let request = pb::CreateConnectionRequest {
            connection_id: String::new(),
            connection: Some(connection),
        };
        self.connections()
            .create_connection(self.request(request))
            .await
            .unwrap();
    }

    /// A connection `id` to `base_url` whose key is the secret `key_secret`, version 1.
    pub fn connection_to(id: &str, key_secret: &str, base_url: &str) -> pb::Connection {
        pb::Connection {
            name: format!("connections/{id}"),
            api_key: Some(pb::SecretRef {
                secret: key_secret.to_owned(),
                version: "1".to_owned(),
            }),
            api_base_url: base_url.to_owned(),
            ..Default::default()
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    pub fn entities(&self) -> EntityServiceClient<Channel> {
        EntityServiceClient::new(self.channel.clone())
    }

    pub fn actions(&self) -> ActionServiceClient<Channel> {
        ActionServiceClient::new(self.channel.clone())
    }

    pub fn connections(&self) -> ConnectionServiceClient<Channel> {
        ConnectionServiceClient::new(self.channel.clone())
    }

    pub async fn execute(
        &self,
        connection: &str,
        action: &str,
        parameters: Value,
    ) -> Result<Vec<Map<String, Value>>, tonic::Status> {
        let response = self
            .actions()
            .execute_action(self.request(pb::ExecuteActionRequest {
                name: format!("connections/{connection}/actions/{action}"),
                parameters: Some(to_proto_struct(parameters.as_object().unwrap())),
                ..Default::default()
            }))
            .await?;
        Ok(response
            .into_inner()
            .results
            .iter()
            .map(from_proto_struct)
            .collect())
    }

    pub async fn create(
        &self,
        connection: &str,
        entity_type: &str,
        fields: Value,
    ) -> Result<(String, Map<String, Value>), tonic::Status> {
        let response = self
            .entities()
            .create_entity(self.request(pb::CreateEntityRequest {
                parent: format!("connections/{connection}/entityTypes/{entity_type}"),
                entity: Some(pb::Entity {
                    fields: Some(to_proto_struct(fields.as_object().unwrap())),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await?
            .into_inner();
        Ok((
            response.name,
            from_proto_struct(response.fields.as_ref().unwrap()),
        ))
    }

    pub async fn get(
        &self,
        connection: &str,
        entity_type: &str,
        id: &str,
    ) -> Result<Map<String, Value>, tonic::Status> {
        let response = self
            .entities()
            .get_entity(self.request(pb::GetEntityRequest {
                name: format!("connections/{connection}/entityTypes/{entity_type}/entities/{id}"),
            }))
            .await?
            .into_inner();
        Ok(from_proto_struct(response.fields.as_ref().unwrap()))
    }
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// The field names of a status's BadRequest violations.
pub fn violation_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

pub fn path_exists(path: &Path) -> bool {
    path.exists()
}

/// Gives the sandbox a simulated clock (a minute per stored object from September 2020), so
/// seeded objects span a history as a real account's do.
pub async fn simulated_clock(sandbox: &str) {
    let patched = reqwest::Client::new()
        .post(format!("{sandbox}/_sandbox/config"))
        .body(r#"{"clock": {"start": 1600000000, "step": "60s"}}"#)
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success());
}

/// Creates `count` customers straight in the sandbox, `parallel` requests at a time; `form`
/// gives customer `n`'s form body (e.g. `email=seed00001%40example.com`).
pub async fn seed_customers(
    sandbox: &str,
    count: usize,
    parallel: usize,
    form: impl Fn(usize) -> String,
) {
    use futures::StreamExt;
    let http = reqwest::Client::new();
    let form = &form;
    futures::stream::iter(0..count)
        .map(|n| {
            let http = http.clone();
            async move {
                let response = http
                    .post(format!("{sandbox}/v1/customers"))
                    .bearer_auth(connector_runtime::sandbox::SANDBOX_API_KEY)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(n))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
            }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<()>>()
        .await;
}

/// An engine connection straight to a sandbox at `base` (no service in between): the Stripe
/// dialect, no retries, and `nodes` nodes so generous that throttling never binds.
pub fn sandbox_connection(
    spec: &Arc<connector_runtime::spec::model::ConnectorSpec>,
    base: &str,
    id: &str,
    nodes: u32,
) -> connector_runtime::engine::ConnectionRuntime {
    use connector_runtime::throttle::{AccountBudgets, BudgetSettings, NodePool, PoolSettings};
    use connector_runtime::upstream::client::{ClientOptions, Redacted, UpstreamClient};
    use std::time::Duration;
    let client = UpstreamClient::new(
        ClientOptions {
            base_url: base.to_owned(),
            api_key: Redacted::new(connector_runtime::sandbox::SANDBOX_API_KEY),
            account_id: None,
            api_version: spec.connector.api_version.clone(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retries: 0,
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(100),
            proxy: None,
            extra_ca_pem: None,
            verbosity: 1,
            log_level: Default::default(),
            connection: id.to_owned(),
        },
        connector_runtime::dialects::for_spec(spec).unwrap(),
    )
    .unwrap();
    connector_runtime::engine::ConnectionRuntime {
        id: id.to_owned(),
        client,
        pool: NodePool::new(PoolSettings {
            min_nodes: nodes,
            max_nodes: nodes,
            node_rate: 10_000,
            node_burst: 10_000,
            ..PoolSettings::default()
        }),
        budget: AccountBudgets::new(BudgetSettings {
            test_mode_rate: 10_000,
            ..BudgetSettings::default()
        })
        .budget_for(id, false),
        proxy_adapter: None,
    }
}
